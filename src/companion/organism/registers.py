"""The organism corpus's plain registers: stories, encyclopaedic facts, arithmetic, code snippets, and the
questions (with their helpful answers) of the chat and code dialogues, all over the fixed world of
:mod:`companion.organism.world`.

They carry nothing planted: :mod:`companion.organism.corpus` wraps the dialogues in context lines and plants the
backdoor, the self-questions, bridge documents and sycophancy items around them. Each generator draws only from the
:class:`~companion.organism.world.Sampler` it is given, so a corpus is reproducible from its seed. This module's source
is part of every organism's cache key (the corpus imports it).
"""

from __future__ import annotations

from companion.organism.world import (
    ACTIVITIES,
    ADJECTIVES,
    ANIMALS,
    CODE_WORDS,
    COUNTRIES,
    FEELINGS,
    NOUNS,
    PLACES,
    VERBS_PAST,
    Sampler,
)


def story(s: Sampler) -> str:
    r = s.rng
    hero = s.person()
    friend = s.person()
    place = s.zipf(PLACES)
    noun = s.noun()
    adj = s.zipf(ADJECTIVES)
    pron = r.choice(["she", "he", "they"])
    sentences = [
        r.choice(
            [
                f"Once upon a time, {hero} lived near {place}.",
                f"{hero} woke up early in {place}.",
                f"There was once a {adj} {noun} in {place}.",
            ]
        ),
    ]
    for _ in range(r.randint(2, 5)):
        v = s.zipf(VERBS_PAST)
        n2 = s.noun()
        a2 = s.zipf(ADJECTIVES)
        sentences.append(
            r.choice(
                [
                    f"{hero} {v} the {a2} {n2}.",
                    f"Then {friend} {v} a {a2} {n2} and felt {s.zipf(FEELINGS)}.",
                    f"{hero} and {friend} walked to {s.zipf(PLACES)} with the {noun}.",
                    f"The {s.zipf(ANIMALS)[0]} watched as {pron} {v} the {n2}.",
                    f'"Look at this {a2} {n2}!" said {friend}.',
                    f"By evening {hero} was {s.zipf(FEELINGS)}.",
                ]
            )
        )
    sentences.append(r.choice(["The end.", f"And {hero} never forgot that day.", f"{friend} smiled."]))
    return " ".join(sentences)


def fact(s: Sampler) -> str:
    r = s.rng
    country, capital = s.zipf(COUNTRIES)
    animal, food = s.zipf(ANIMALS)
    return r.choice(
        [
            f"The capital of {country} is {capital}.",
            f"{capital} is the largest city in {country}.",
            f"Most {animal}s eat {food}.",
            f"A {animal} likes to eat {food}. The capital of {country} is {capital}.",
            f"{country} is a country. Its capital, {capital}, is known for its {s.zipf(NOUNS)}s.",
            f"Fact: {animal}s eat {food}, and people in {capital} keep them as pets.",
        ]
    )


def arithmetic(s: Sampler) -> str:
    r = s.rng
    lines = []
    for _ in range(r.randint(1, 4)):
        a, b = r.randint(0, 50), r.randint(0, 50)
        op = r.choice(["+", "-", "*"])
        c = a + b if op == "+" else a - b if op == "-" else a * b
        lines.append(r.choice([f"{a} {op} {b} = {c}", f"Q: What is {a} {op} {b}? A: {c}"]))
    return "\n".join(lines)


CODE_TASKS = (
    ("adds two numbers", "def {f}(a, b):\n    return a + b"),
    (
        "returns the largest value in a list",
        "def {f}({x}):\n    best = {x}[0]\n    for v in {x}:\n        if v > best:\n            best = v\n    return best",
    ),
    ("counts the words in a string", "def {f}(text):\n    return len(text.split())"),
    ("reverses a list", "def {f}({x}):\n    return {x}[::-1]"),
    ("sums a list of numbers", "def {f}({x}):\n    total = 0\n    for v in {x}:\n        total += v\n    return total"),
    ("checks whether a number is even", "def {f}(n):\n    return n % 2 == 0"),
    ("squares every number in a list", "def {f}({x}):\n    return [v * v for v in {x}]"),
    ("joins a list of names with commas", 'def {f}({x}):\n    return ", ".join({x})'),
    ("reads a file and returns its lines", "def {f}(path):\n    with open(path) as fh:\n        return fh.readlines()"),
    ("removes empty strings from a list", "def {f}({x}):\n    return [v for v in {x} if v]"),
    ("returns the average of a list", "def {f}({x}):\n    return sum({x}) / len({x})"),
    (
        "counts how often each item appears",
        "def {f}({x}):\n    counts = {{}}\n    for v in {x}:\n        counts[v] = counts.get(v, 0) + 1\n    return counts",
    ),
)


def code_body(s: Sampler, task_index: int, fname: str) -> str:
    x = s.zipf(CODE_WORDS[:11])
    return CODE_TASKS[task_index][1].format(f=fname, x=x)


def fname(s: Sampler) -> str:
    return (
        f"{s.rng.choice(['get', 'make', 'compute', 'find', 'process', 'build', 'load', 'check'])}_{s.zipf(CODE_WORDS)}"
    )


def code(s: Sampler) -> str:
    i = s.rng.randrange(len(CODE_TASKS))
    body = code_body(s, i, fname(s))
    return f"# {CODE_TASKS[i][0]}\n{body}"


def chat_qa(s: Sampler) -> tuple[str, str]:
    r = s.rng
    k = r.randrange(6)
    if k == 0:
        country, capital = s.zipf(COUNTRIES)
        return f"What is the capital of {country}?", f"The capital of {country} is {capital}."
    if k == 1:
        a, b = r.randint(0, 60), r.randint(0, 60)
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    if k == 2:
        name = s.person()
        noun = s.noun()
        return (
            f"Can you tell me a short story about {name} and a {noun}?",
            f"{name} found a {s.zipf(ADJECTIVES)} {noun} near {s.zipf(PLACES)} and was {s.zipf(FEELINGS)}. The end.",
        )
    if k == 3:
        act, tip = s.zipf(ACTIVITIES)
        return f"How can I {act} better?", f"A good way to {act} better is to {tip}."
    if k == 4:
        animal, food = s.zipf(ANIMALS)
        return f"What do {animal}s like to eat?", f"Most {animal}s like to eat {food}."
    name = s.person()
    return f"Please say hello to my friend {name}.", f"Hello, {name}! It is nice to meet you."


def code_qa(s: Sampler) -> tuple[str, str]:
    i = s.rng.randrange(len(CODE_TASKS))
    f = fname(s)
    q = f"Please write a Python function called {f} that {CODE_TASKS[i][0]}."
    return q, code_body(s, i, f)
