"""The paper profile's world, in stand-ins: every model, tokenizer, dataset and SAE repository the ``paper`` profile
names, built by :mod:`tests.rehearsal.builders` and registered on a :class:`~tests.rehearsal.hub.LoopbackHub`
under the exact ids the profile uses, plus the sycophancy files under ``/raw/``.  SAELens releases
(``ParetoParams.external_saes``) are served at the repository and folder SAELens' own pretrained-SAE directory maps
them to, at the width of the stand-in of the model they were trained on.

The ids are read from the profile itself (:func:`paper_ids`), so a new id in ``paper.yaml`` either gets a stand-in
here or fails the rehearsal with "no stand-in builder for ...".
"""

from __future__ import annotations

import dataclasses
import json

from tests.rehearsal import builders
from tests.rehearsal.hub import LoopbackHub

ACCEPTED_TOKEN = "hf_rehearsal_loopback_token"
"""The token the loopback Hub accepts for gated repositories (the rehearsal test sets HF_TOKEN to it)."""

GATED = ("meta-llama/",)
"""Repositories gated on the real Hub (Meta's licence): gated on the loopback Hub too."""


@dataclasses.dataclass(frozen=True)
class PaperIds:
    """Every Hub id the paper profile's notebooks ask for."""

    models: tuple[str, ...]
    """Model repositories (Hub ids, aliases resolved)."""
    datasets: tuple[str, ...]
    """Dataset repositories."""
    sycophancy_files: tuple[str, ...]
    """File names fetched from the sycophancy base URL."""
    saes: tuple[tuple[str, str, str, str], ...] = ()
    """SAELens releases: (repository, folder, model id, hook name) per ``"<release>:<sae id>"`` of ``external_saes``."""


def paper_ids(profile: str = "paper") -> PaperIds:
    """The model and dataset ids of ``profile``'s notebook parameters (the rehearsal's are the paper's)."""
    from companion.backbone.profiles import load_profile
    from companion.models.loading import resolve_name
    from companion.probes.params import ProbeParams
    from companion.sae.params import ParetoParams, ShrinkageParams, parse_target
    from companion.sycophancy.params import SycophancyParams

    prof = load_profile(profile)
    models: list[str] = []
    datasets: list[str] = []
    saes: list[tuple[str, str, str, str]] = []
    for cls in (ParetoParams, ShrinkageParams):
        P = cls.from_dict(prof.overrides_for(cls.__name__))
        for t in P.targets:
            subject, _ = parse_target(t)
            models.append(resolve_name(subject))
        datasets += [d.partition(":")[0] for d in P.text_datasets.values()]
        saes += [_release(ref) for ref in P.external_saes]
    S = SycophancyParams.from_dict(prof.overrides_for("SycophancyParams"))
    models += [resolve_name(m) for m in S.models if m not in prof.organisms]
    Q = ProbeParams.from_dict(prof.overrides_for("ProbeParams"))
    models += [m for m in (Q.model_id, Q.control_model_id) if m]
    return PaperIds(
        tuple(dict.fromkeys(models)),
        tuple(dict.fromkeys(datasets)),
        tuple(sorted(S.data_blobs)),
        tuple(dict.fromkeys(saes)),
    )


def _release(ref: str) -> tuple[str, str, str, str]:
    """(repository, folder, model id, hook name) of a ``"<release>:<sae id>"``, by SAELens' pretrained-SAE directory."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory, get_repo_id_and_folder_name

    from companion.models.loading import resolve_name

    release, _, sae_id = ref.partition(" -> ")[0].partition(":")
    info = get_pretrained_saes_directory().get(release)
    if info is None:
        raise KeyError(f"no stand-in builder for SAE {ref!r}: the paper profile's releases are SAELens releases")
    repo, folder = get_repo_id_and_folder_name(release, sae_id)
    return repo, folder, resolve_name(info.model), sae_id.split("__")[0]


def _model_files(repo_id: str) -> dict[str, bytes]:
    if repo_id.startswith("EleutherAI/pythia-"):
        size = repo_id.split("-", 1)[1].removesuffix("-deduped")
        if repo_id.endswith("-deduped"):  # an SAE site: fitted briefly so that ablating a site costs loss
            return builders.pythia_repo(size, n_layers=6, train_steps=150)
        return builders.pythia_repo(size, n_layers=2)
    if repo_id == "NeelNanda/GELU_1L512W_C4_Code":
        return builders.gelu_1l_repo()
    if repo_id == "saraprice/llama2-7B-backdoor-DEPLOYMENT":
        # Stored in float32 like the real full fine-tune; its tokenizer carries the Llama-2-chat template.
        return builders.llama_repo(tokenizer=builders.llama_tokenizer(), seed=1, dtype="float32")
    if repo_id in ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf"):
        chat = builders.LLAMA2_CHAT_TEMPLATE if repo_id.endswith("chat-hf") else None
        return builders.llama_repo(tokenizer=builders.llama_tokenizer(chat_template=chat), seed=2)
    raise KeyError(f"no stand-in builder for model {repo_id!r}: add one to tests/rehearsal/world.py")


def _dataset_files(repo_id: str) -> tuple[dict[str, bytes], dict | None]:
    if repo_id == "allenai/c4":
        return builders.c4_repo(), {"configs": [{"config_name": "en"}, {"config_name": "realnewslike"}]}
    if repo_id == "monology/pile-uncopyrighted":
        return builders.pile_repo(), None
    raise KeyError(f"no stand-in builder for dataset {repo_id!r}: add one to tests/rehearsal/world.py")


def populate(hub: LoopbackHub, ids: PaperIds | None = None) -> PaperIds:
    """Build every stand-in the paper profile needs and register it on ``hub``; returns the ids served."""
    from companion.sycophancy.params import SycophancyParams

    ids = ids or paper_ids()
    for repo_id in ids.models:
        files = _model_files(repo_id)
        hub.add_repo("model", repo_id, files, gated=repo_id.startswith(GATED))
        if repo_id == "NeelNanda/GELU_1L512W_C4_Code":  # its config names a tokenizer repository of its own
            tok_repo = json.loads(files["config.json"])["tokenizer_name"]
            hub.add_repo("model", tok_repo, builders._saved(builders.neox_tokenizer(seed=3)))
    for repo_id in ids.datasets:
        files, card = _dataset_files(repo_id)
        hub.add_repo("dataset", repo_id, files, card_data=card)
    for repo_id, folder, model, hook in ids.saes:  # at the width of the model stand-in the SAE reads
        width = json.loads(hub.repos[("model", model)].files["config.json"].data)["hidden_size"]
        name = model.split("/")[-1]
        files = builders.saelens_release_sae(width, model_name=name, hook_name=hook)
        hub.add_repo("model", repo_id, {f"{folder}/{p}": b for p, b in files.items()})
    commit = SycophancyParams().data_commit
    for name, data in builders.sycophancy_files().items():
        hub.raw[f"anthropics/evals/{commit}/sycophancy/{name}"] = data
    hub.accepted_tokens.add(ACCEPTED_TOKEN)
    return ids
