"""Notebook 05 beside SAEBench (Karvonen et al. 2025, arXiv:2503.09532): its own sparse-probing functions on the
same SAE codes, labels and split as :func:`companion.features.metrics.k_sparse_probe`.

SAEBench's sparse-probing evaluation cannot run here end to end: it reads its datasets and models from the Hugging
Face Hub.  Its selection and probe are plain functions of tensors (``sae_bench.evals.sparse_probing.probe_training``:
``get_top_k_mean_diff_mask``, ``train_sklearn_probe``), so they run on our codes.  SAEBench fits its probe on the
raw selected latents (float32); ours standardises them first, so the two accuracies may differ where the latents'
scales differ; the selected latents must be the same.  ``sae-bench`` is installed by ``make setup`` without its
declared dependencies (benchmarks/requirements-peers.txt).
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import Tensor

from companion.features import metrics as fm


@dataclasses.dataclass(frozen=True)
class PeerComparison:
    """One k-sparse probe computed by this project and by SAEBench's functions on the same codes and split."""

    k: int
    """Latents selected."""
    ours: float
    """companion.features.metrics.k_sparse_probe accuracy on the score split."""
    saebench: float
    """SAEBench's get_top_k_mean_diff_mask + train_sklearn_probe accuracy on the score split."""
    same_latents: bool
    """Whether both selected the same k latents."""


def saebench_available() -> bool:
    """Whether SAEBench's probe functions can be imported."""
    try:
        import sae_bench.evals.sparse_probing.probe_training  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure means "not available here", said in the notebook
        return False
    return True


def saebench_k_sparse(
    codes_select: Tensor, y_select: Tensor, codes_score: Tensor, y_score: Tensor, k: int
) -> tuple[float, Tensor]:
    """SAEBench's k-sparse probe: its mean-difference mask and its sklearn probe -> (score-split accuracy, latents)."""
    from sae_bench.evals.sparse_probing import probe_training as pt

    cs, ct = codes_select.float(), codes_score.float()
    ys, yt = y_select.long(), y_score.long()
    mask = pt.get_top_k_mean_diff_mask(cs, ys, k)
    with warnings.catch_warnings():  # SAEBench passes penalty="l2", which scikit-learn 1.8 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        _, acc = pt.train_sklearn_probe(
            pt.apply_topk_mask_reduce_dim(cs, mask), ys, pt.apply_topk_mask_reduce_dim(ct, mask), yt
        )
    return float(acc), torch.nonzero(~mask).reshape(-1)


def compare_k_sparse(
    codes: Tensor, labels: Tensor, select: Tensor, score: Tensor, k: int, c: float = 1.0
) -> PeerComparison:
    """Ours and SAEBench's k-sparse probe on ``codes [n, m]``, ``labels [n]`` and one (select, score) split."""
    cs, ct, ys, yt = codes[select], codes[score], labels[select], labels[score]
    ours = fm.k_sparse_probe(cs, ys, ct, yt, k, c).accuracy
    theirs, latents = saebench_k_sparse(cs, ys, ct, yt, k)
    mine = fm.mean_difference_topk(cs, ys, k)
    return PeerComparison(k, ours, theirs, set(mine.tolist()) == set(latents.tolist()))


def compare_on_sweep(params, target: str, architecture: str, variable: str) -> tuple[str, list[PeerComparison]]:
    """Ours and SAEBench's k-sparse probes, for every k of ``params.ks``, on one SAE of notebook 01's sweep at
    ``target`` (the architecture's reseed setting, from the cache) and one planted variable, with the notebook's
    examples and split; returns the SAE's name and the comparisons."""
    from companion.features.experiment import text_activations
    from companion.features.variables import planted_variable
    from companion.organism.build import organism_spec
    from companion.sae import experiment as sx
    from companion.sae.params import ORGANISM_PREFIX, parse_target
    from companion.sae.subjects import load_subject

    subject_name, site = parse_target(target)
    setting = params.reseed_choice()[architecture]
    sweep = sx.site_sweep(params, target)
    sae = next(
        t
        for t in sweep.saes
        if t.spec.architecture == architecture and float(t.spec.options.get("k", t.spec.lam)) == setting
    )
    data = planted_variable(
        variable, params.n_examples, params.seed, organism_spec(subject_name[len(ORGANISM_PREFIX) :]).corpus
    )
    acts = text_activations(
        load_subject(subject_name, device=params.device).model,
        data.texts,
        [site],
        data.pool,
        max_tokens=params.max_tokens,
    )[site]
    codes = acts.pooled(sae.encode(acts.rows_to_encode().to(params.device)).cpu()).double()
    select, score = fm.stratified_split(data.labels, params.select_fraction, params.seed)
    return sae.spec.name, [compare_k_sparse(codes, data.labels, select, score, k, params.probe_c) for k in params.ks]
