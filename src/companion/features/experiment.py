"""Notebook 05: recovery of the organism's planted variables by every SAE of notebooks 01/02, and the reseed noise.

:func:`run_recovery` goes through the targets of notebook 01.  Per target it takes the sweep from the cache
(:func:`companion.sae.experiment.site_sweep`; trained only when notebook 01 has not run), its held-out evaluation
(L0, loss recovered, γ: :func:`companion.sae.evaluation.evaluate_site`), reads the model's activations at the site on
each planted variable's held-out texts (:mod:`companion.features.variables`), and scores every SAE with both
recovery protocols of :mod:`companion.features.metrics`, beside the dense-probe ceiling and the random-direction
floor.  For the reseed noise, the SAE of one chosen λ (or k) per architecture is retrained at
``reseed_sae_seeds`` — the same activation stream, organism and recipe, another initialisation — through the same
cached sweep builder (a sweep holding just those SAEs), and scored the same way; the sweep's own SAE is the first
seed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import Tensor

from companion.features import metrics as fm
from companion.features.params import FeatureParams
from companion.features.variables import LabelledTexts, planted_variable


@dataclasses.dataclass
class SiteActivations:
    """A variable's activations at one site: every text token's, and where each example's tokens are."""

    tokens: Tensor
    """``[T, d]`` activations of every text token (BOS excluded), examples one after another."""
    owner: Tensor
    """``[T]`` the example each token row belongs to."""
    last: Tensor
    """``[n]`` the row of each example's last token."""
    pool: str
    """"last" or "mean" (the variable's)."""

    def pooled(self, values: Tensor | None = None) -> Tensor:
        """``values [T, m]`` (default: the activations) pooled per example -> ``[n, m]``."""
        v = self.tokens if values is None else values
        if self.pool == "last":
            return v[self.last] if v.shape[0] == self.tokens.shape[0] else v
        # Summed in the codes' own dtype (a text has at most max_tokens tokens), widened once pooled: converting
        # every token's code to float64 first cost more than the encoding.
        out = torch.zeros(len(self.last), v.shape[1], dtype=v.dtype)
        out.index_add_(0, self.owner, v)
        return out.double() / torch.bincount(self.owner, minlength=len(self.last)).clamp(min=1)[:, None]

    def rows_to_encode(self) -> Tensor:
        """The activations an SAE must encode for :meth:`pooled`: the last tokens only, or every token."""
        return self.tokens[self.last] if self.pool == "last" else self.tokens


@torch.no_grad()
def text_activations(
    model: Any, texts: Sequence[str], sites: Sequence[str], pool: str, *, max_tokens: int, batch_size: int = 32
) -> dict[str, SiteActivations]:
    """Activations of ``texts`` at ``sites`` (BOS = end-of-text prepended, cut to ``max_tokens``; one forward per
    batch of texts of one length, so nothing is padded)."""
    from companion.models.scoring import length_sorted_batches
    from companion.sae.activations import site_activations

    tok = model.tokenizer
    eot = int(tok.convert_tokens_to_ids("<|endoftext|>"))
    ids = [[eot] + e.ids[:max_tokens] for e in tok.backend_tokenizer.encode_batch(list(texts))]
    lengths = [len(r) for r in ids]
    per_text: dict[str, list[Tensor | None]] = {s: [None] * len(ids) for s in sites}
    # Batches of texts of one length: no padding at all (texts cut at max_tokens share their length often).
    for batch in length_sorted_batches(
        lengths, batch_size=batch_size, fits=lambda b: len({lengths[i] for i in b}) == 1
    ):
        acts = site_activations(model, torch.tensor([ids[i] for i in batch], dtype=torch.long), list(sites))
        for s in sites:
            for row, i in enumerate(batch):
                per_text[s][i] = acts[s][row, 1:].float().cpu()
    own = torch.repeat_interleave(torch.arange(len(ids)), torch.tensor([n - 1 for n in lengths]))
    last = torch.cumsum(torch.bincount(own, minlength=len(ids)), 0) - 1
    # Every text's entry was filled above (each index is in exactly one batch).
    return {s: SiteActivations(torch.cat(cast(list[Tensor], per_text[s])), own, last, pool) for s in sites}


@dataclasses.dataclass(frozen=True)
class RecoveryRow:
    """One SAE's recovery of one variable at one target, with its reconstruction metrics."""

    target: str
    """"subject@site"."""
    architecture: str
    """"baseline", "gated", "jumprelu", "topk" or "batchtopk"."""
    setting: float
    """λ, or k for TopK and BatchTopK."""
    n_latents: int
    """Dictionary size."""
    init_seed: int
    """The seed the SAE was initialised from."""
    reseed: bool
    """True for an SAE retrained for the reseed noise (not in notebook 01's sweep)."""
    l0: float
    """E‖f‖₀ on held-out activations (notebook 01's evaluation)."""
    loss_recovered: float
    """1 − (CE_spliced − CE_clean)/(CE_zero − CE_clean)."""
    gamma: float
    """Relative reconstruction bias γ (notebook 02)."""
    variable: str
    """The planted variable."""
    auroc: float
    """The best single latent's AUROC on the score split."""
    latent: int
    """That latent."""
    accuracy: dict[int, float]
    """k -> k-sparse probe accuracy on the score split."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """The ceiling and floor for one variable at one target."""

    target: str
    """"subject@site"."""
    variable: str
    """The planted variable."""
    dense_accuracy: float
    """Logistic probe on all raw activations: accuracy on the score split (the ceiling)."""
    dense_auroc: float
    """Its AUROC."""
    floor_auroc: list[float]
    """Best single random direction's AUROC, per draw."""
    floor_accuracy: dict[int, list[float]]
    """k -> k-sparse accuracy on random directions, per draw."""


@dataclasses.dataclass
class RecoveryRun:
    """Everything notebook 05 measures."""

    rows: list[RecoveryRow]
    """Every SAE of the sweeps and the reseeds, per variable."""
    references: list[Reference]
    """Ceiling and floor per target and variable."""
    variables: dict[str, str]
    """Variable -> what its classes mean."""
    counts: dict[str, tuple[int, int]]
    """Variable -> (examples, of which True)."""
    reseed: dict[str, dict[str, float]]
    """Target -> architecture -> the setting retrained at other seeds."""
    ks: tuple[int, ...]
    """The k of the k-sparse probes."""


def _setting(spec: Any) -> float:
    return float(spec.options["k"]) if "k" in spec.options else float(spec.lam)


def reseed_params(params: FeatureParams, sae_seed: int) -> FeatureParams:
    """Notebook 01's sweep cut to the chosen SAE of each architecture, initialised from ``sae_seed``."""
    c = params.reseed_choice()

    def one(arch: str) -> list:
        return [c[arch]] if arch in c else []

    return params.replace(
        sae_seed=sae_seed,
        lambdas_baseline=one("baseline"),
        lambdas_gated=one("gated"),
        lambdas_jumprelu=one("jumprelu"),
        topk_ks=[int(k) for k in one("topk")],
        batchtopk_ks=[int(k) for k in one("batchtopk")],
        external_saes=(),
        reseed_sae_seeds=(),
    )


def _score_sweep(
    params: FeatureParams,
    sweep: Any,
    evals: Sequence[Any],
    acts: dict[str, SiteActivations],
    data: dict[str, LabelledTexts],
    splits: dict[str, tuple[Tensor, Tensor]],
    sae_seed: int,
    reseed: bool,
    only: Callable[[Any], bool] = lambda spec: True,
) -> list[RecoveryRow]:
    rows = []
    for i, (t, ev) in enumerate(zip(sweep.saes, evals, strict=True)):
        if not only(t.spec):
            continue
        for v, a in acts.items():
            codes = a.pooled(t.encode(a.rows_to_encode().to(params.device)).cpu()).double()
            rec = fm.recovery(codes, data[v].labels, *splits[v], params.ks, params.probe_c)
            rows.append(
                RecoveryRow(
                    sweep.target,
                    t.spec.architecture,
                    _setting(t.spec),
                    t.spec.n_latents,
                    sae_seed + i,
                    reseed,
                    ev.l0,
                    ev.loss_recovered,
                    ev.gamma,
                    v,
                    rec.auroc,
                    rec.latent,
                    rec.accuracy,
                )
            )
    return rows


def run_recovery(params: FeatureParams, *, log: Callable[[str], Any] = print) -> RecoveryRun:
    """Score every SAE of every target (sweeps from the cache, reseeds trained or cached); see the module docstring."""
    from companion.organism.build import organism_spec
    from companion.sae import experiment as sx
    from companion.sae.params import ORGANISM_PREFIX, parse_target
    from companion.sae.subjects import load_subject

    t_start = time.perf_counter()
    rows: list[RecoveryRow] = []
    refs: list[Reference] = []
    data: dict[str, LabelledTexts] = {}
    choice = params.reseed_choice()
    reseed_targets = params.reseed_targets or params.targets
    for target in params.targets:
        subject_name, site = parse_target(target)
        if not subject_name.startswith(ORGANISM_PREFIX):
            raise ValueError(f"target {target!r}: planted variables exist only for organisms ('organism:<name>')")
        t0 = time.perf_counter()
        sweep = sx.site_sweep(params, target)
        evals = sx.evaluate_site(params, sweep)
        log(
            f"{target}: {len(sweep.saes)} SAEs {'from the cache' if sweep.from_cache else 'trained now'} "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        subject = load_subject(subject_name, device=params.device)
        corpus = organism_spec(subject_name[len(ORGANISM_PREFIX) :]).corpus
        for v in params.variables:
            data.setdefault(v, planted_variable(v, params.n_examples, params.seed, corpus))
        acts = {
            v: text_activations(subject.model, data[v].texts, [site], data[v].pool, max_tokens=params.max_tokens)[site]
            for v in params.variables
        }
        splits = {v: fm.stratified_split(data[v].labels, params.select_fraction, params.seed) for v in acts}
        width = max(t.spec.n_latents for t in sweep.saes)
        for v, a in acts.items():
            x = a.pooled().double()
            sel, score = splits[v]
            y = data[v].labels
            dense = fm.dense_probe(x[sel], y[sel], x[score], y[score], params.probe_c)
            floors = [
                fm.recovery(
                    fm.random_codes(x, width, seed=10_000 * params.seed + j), y, sel, score, params.ks, params.probe_c
                )
                for j in range(params.n_floor_draws)
            ]
            refs.append(
                Reference(
                    target,
                    v,
                    dense.accuracy,
                    dense.auroc,
                    [f.auroc for f in floors],
                    {k: [f.accuracy[k] for f in floors] for k in params.ks},
                )
            )
        rows += _score_sweep(params, sweep, evals, acts, data, splits, params.sae_seed, False)
        if target not in reseed_targets:
            continue
        for s in params.reseed_sae_seeds:
            t0 = time.perf_counter()
            rp = reseed_params(params, s)
            again = sx.site_sweep(rp, target)
            rows += _score_sweep(rp, again, sx.evaluate_site(rp, again), acts, data, splits, s, True)
            log(
                f"{target}: reseed sae_seed={s}: {len(again.saes)} SAEs "
                f"{'from the cache' if again.from_cache else 'trained now'} in {time.perf_counter() - t0:.1f} s"
            )
    log(f"{len(rows)} (SAE, variable) scores at {len(params.targets)} targets in {time.perf_counter() - t_start:.1f} s")
    return RecoveryRun(
        rows,
        refs,
        {v: d.description for v, d in data.items()},
        {v: (len(d.labels), int(d.labels.sum())) for v, d in data.items()},
        {t: dict(choice) for t in reseed_targets},
        tuple(params.ks),
    )


def results_frame(run: RecoveryRun):
    """One row per (SAE, variable): the recovery metrics (``acc_k<k>`` per k) beside L0, loss recovered and γ."""
    import pandas as pd

    out = []
    for r in run.rows:
        d = dataclasses.asdict(r)
        acc = d.pop("accuracy")
        d.update({f"acc_k{k}": acc[k] for k in run.ks})
        out.append(d)
    return pd.DataFrame(out)


def references_frame(run: RecoveryRun):
    """Ceiling and floor per target and variable (the floor as the range over its draws)."""
    import pandas as pd

    out = []
    for r in run.references:
        d = {
            "target": r.target,
            "variable": r.variable,
            "dense_auroc": r.dense_auroc,
            "dense_accuracy": r.dense_accuracy,
            "floor_auroc_min": min(r.floor_auroc),
            "floor_auroc_max": max(r.floor_auroc),
        }
        for k, v in r.floor_accuracy.items():
            d[f"floor_acc_k{k}_max"] = max(v)
        out.append(d)
    return pd.DataFrame(out)
