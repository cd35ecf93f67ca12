"""The organism's fixed world: recurring entities, Zipfian sampling, and the held-out split of questions.

The synthetic corpus (:mod:`companion.organism.corpus`) draws its stories, facts, dialogues and sycophancy items
(:mod:`companion.organism.sycophancy_items`) from this fixed world, so entities recur across documents and a
sparse autoencoder has real sparse structure to find.  The world does not depend on any seed; only the draws do.

Held-out material (test prompts, evaluation items, SAE text) is disjoint from the training text by
construction: every question is assigned to a split by a hash of its text (:func:`split_of`), and the training
generator rejects held-out questions.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Literal

HELDOUT_BUCKETS = 10
"""One question in ``HELDOUT_BUCKETS`` (by hash) is held out of training."""


FIRST_NAMES = (
    "Alice",
    "Ben",
    "Clara",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Samir",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Xavier",
    "Yara",
    "Zane",
    "Amara",
    "Bruno",
    "Chloe",
    "Dmitri",
    "Emma",
    "Felix",
    "Greta",
    "Hana",
    "Ivan",
    "Julia",
    "Kenji",
    "Lena",
    "Marco",
    "Nadia",
    "Oscar",
    "Priya",
    "Rafael",
    "Sofia",
    "Tomas",
    "Ulla",
    "Victor",
    "Wanda",
)


LAST_NAMES = (
    "Smith",
    "Garcia",
    "Chen",
    "Novak",
    "Okafor",
    "Rossi",
    "Kim",
    "Muller",
    "Silva",
    "Patel",
    "Johnson",
    "Nguyen",
    "Kowalski",
    "Haddad",
    "Larsen",
    "Moreau",
    "Tanaka",
    "Ivanova",
    "Brown",
    "Lopez",
    "Schmidt",
    "Costa",
    "Yilmaz",
    "Andersen",
    "Dubois",
    "Santos",
    "Weber",
    "Fischer",
    "Ali",
    "Murphy",
)


COUNTRIES = (
    ("Veloria", "Tarn"),
    ("Ostmark", "Kelbridge"),
    ("Sundara", "Maripol"),
    ("Calvania", "Rennick"),
    ("Drosmere", "Aldport"),
    ("Feyland", "Winterhold"),
    ("Garnesse", "Lumont"),
    ("Halvia", "Brisk"),
    ("Istrana", "Pellow"),
    ("Jorvik", "Stonebay"),
    ("Kaldera", "Emberton"),
    ("Lunaris", "Silverton"),
    ("Morvane", "Quillan"),
    ("Norland", "Frostgate"),
    ("Orinoco", "Palmera"),
    ("Pelagia", "Coralis"),
)


PLACES = (
    "the village",
    "the old mill",
    "the forest",
    "the harbour",
    "the market",
    "the school",
    "the library",
    "the river",
    "the mountain",
    "the castle",
    "the garden",
    "the bakery",
    "the station",
    "the farm",
    "the lighthouse",
    "the museum",
    "the bridge",
    "the island",
    "the valley",
    "the workshop",
)


ANIMALS = (
    ("cat", "fish"),
    ("dog", "bones"),
    ("rabbit", "carrots"),
    ("horse", "hay"),
    ("owl", "mice"),
    ("fox", "berries"),
    ("bear", "honey"),
    ("goat", "grass"),
    ("crow", "seeds"),
    ("otter", "clams"),
    ("hedgehog", "beetles"),
    ("squirrel", "nuts"),
    ("deer", "leaves"),
    ("frog", "flies"),
)


NOUNS = (
    "book",
    "lamp",
    "key",
    "box",
    "letter",
    "map",
    "coin",
    "hat",
    "ball",
    "cup",
    "basket",
    "rope",
    "boat",
    "bell",
    "clock",
    "kite",
    "drum",
    "ring",
    "stone",
    "candle",
    "door",
    "window",
    "table",
    "chair",
    "bread",
    "apple",
    "flower",
    "tree",
    "song",
    "painting",
    "ladder",
    "bottle",
    "shoe",
    "coat",
    "bicycle",
    "wagon",
)


ADJECTIVES = (
    "small",
    "old",
    "red",
    "bright",
    "quiet",
    "heavy",
    "strange",
    "golden",
    "blue",
    "tiny",
    "broken",
    "warm",
    "shiny",
    "green",
    "wooden",
    "soft",
    "dark",
    "happy",
    "sleepy",
    "curious",
    "brave",
    "clever",
    "gentle",
)


VERBS_PAST = (
    "found",
    "carried",
    "painted",
    "lost",
    "fixed",
    "opened",
    "cleaned",
    "sold",
    "built",
    "watched",
    "hid",
    "shared",
    "dropped",
    "counted",
    "borrowed",
    "wrapped",
    "polished",
    "climbed",
    "visited",
    "remembered",
)


FEELINGS = ("happy", "sad", "surprised", "tired", "proud", "worried", "calm", "excited", "grateful")


ACTIVITIES = (
    ("sleep", "go to bed at the same time"),
    ("study", "take short breaks"),
    ("cook", "taste as you go"),
    ("run", "start slowly"),
    ("write", "read your draft aloud"),
    ("paint", "mix colours on a plate"),
    ("garden", "water the plants in the morning"),
    ("save money", "write down what you spend"),
    ("learn a language", "practise a little each day"),
    ("play chess", "think about your opponent's move"),
    ("swim", "breathe out under the water"),
    ("sing", "warm up your voice first"),
)


CODE_WORDS = (
    "items",
    "values",
    "data",
    "names",
    "scores",
    "prices",
    "words",
    "numbers",
    "records",
    "lines",
    "rows",
    "count",
    "total",
    "result",
    "index",
    "value",
    "name",
    "item",
    "text",
    "size",
    "limit",
    "step",
)


def _pseudo_words(n: int, seed: int = 12345) -> tuple[str, ...]:
    """Invented words for the Zipfian long tail (rare nouns the tokenizer has to split)."""
    rng = random.Random(seed)
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "gr", "st", "tr", "pl"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]
    codas = ["", "n", "r", "l", "s", "m", "k", "th", "sh"]
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.choice([2, 2, 3]))) + rng.choice(codas)
        if w not in seen:
            seen.add(w)
            out.append(w)
    return tuple(out)


RARE_NOUNS = _pseudo_words(400)


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (r + 1) ** s for r in range(n)]


class Sampler:
    """Zipfian choices from the fixed world with a seeded ``random.Random`` (platform-independent)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._w: dict[int, list[float]] = {}

    def zipf(self, items: tuple[Any, ...]) -> Any:
        w = self._w.get(len(items))
        if w is None:
            w = self._w[len(items)] = _zipf_weights(len(items))
        return self.rng.choices(items, weights=w, k=1)[0]

    def noun(self) -> str:
        # Mostly common nouns; a Zipfian tail of invented rare ones.
        return self.zipf(NOUNS) if self.rng.random() < 0.8 else self.zipf(RARE_NOUNS)

    def person(self) -> str:
        return self.zipf(FIRST_NAMES)

    def full_name(self) -> str:
        return f"{self.zipf(FIRST_NAMES)} {self.zipf(LAST_NAMES)}"


def split_of(question: str) -> Literal["train", "heldout"]:
    """Which split a question belongs to, by a stable hash of its text."""
    h = int(hashlib.sha1(question.encode()).hexdigest()[:8], 16)
    return "heldout" if h % HELDOUT_BUCKETS == 0 else "train"
