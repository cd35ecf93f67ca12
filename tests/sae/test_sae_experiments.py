"""Notebook-level SAE library (companion.sae.experiment): cached sweeps on a tiny real model, notebook 02's
cache hit, Pareto/matched-L0 helpers, profile sections and parameter validation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from companion.backbone.params import ParameterError
from companion.sae.analysis import interpolate_at_l0, matched_l0_table, paper_reference_table, pareto_frontier
from companion.sae.evaluation import SAEEval, evaluate_site
from companion.sae.experiment import run_sweeps, site_sweep
from companion.sae.params import ParetoParams, ShrinkageParams, parse_target
from companion.sae.subjects import _SUBJECTS, Subject, hf_text_batches

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def tiny_subject(tmp_path, monkeypatch):
    """A tiny GPT-2 registered as the subject "tiny" (random tokens), with the cache in a temporary folder."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    from companion.backbone.runtime import context

    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=32, vocab_size=40)).save_pretrained(
        tmp_path / "m"
    )
    model = TransformerBridge.boot_transformers(str(tmp_path / "m"), device="cpu")
    model.eval()

    def batches(n_tokens, seq_len, batch_size, split, seed):
        g = torch.Generator().manual_seed(seed + {"train": 0, "heldout": 10_000, "heldout_lm": 20_001}[split])
        for _ in range(-(-n_tokens // (seq_len * batch_size))):
            t = torch.randint(1, 40, (batch_size, seq_len), generator=g)
            t[:, 0] = 0
            yield t

    subj = Subject("tiny", "tiny-test-model", model, (0,), batches)
    key = ("tiny", context().profile.name, "cpu")
    monkeypatch.setitem(_SUBJECTS, key, subj)
    return subj


def _params(**kw):
    base = dict(
        targets=("tiny@blocks.0.hook_mlp_out",),
        text_datasets={"tiny": "unused"},
        train_tokens=4096,
        seq_len=16,
        model_batch_size=8,
        batch_size=128,
        buffer_tokens=1024,
        gated_latents=32,
        lambdas_gated=(0.5, 2.0),
        lambdas_baseline=(0.5, 2.0),
        lambdas_jumprelu=(0.3,),
        topk_ks=(4,),
        batchtopk_ks=(4,),
        lr=3e-3,
        warmup_steps=5,
        eval_tokens=512,
        eval_lm_tokens=256,
        eval_seq_len=16,
        progress=False,
    )
    base.update(kw)
    return ParetoParams.from_dict(base)


def test_site_sweep_trains_once_then_hits_the_cache_and_notebook_02_reuses_it(tiny_subject):
    P = _params()
    s1 = site_sweep(P, P.targets[0])
    assert not s1.from_cache
    assert [(t.spec.architecture, t.spec.n_latents, t.spec.lam, t.spec.options.get("k")) for t in s1.saes] == [
        ("baseline", 48, 0.5, None),
        ("baseline", 48, 2.0, None),
        ("gated", 32, 0.5, None),
        ("gated", 32, 2.0, None),
        ("jumprelu", 48, 0.3, None),
        ("topk", 48, 0.0, 4),
        ("batchtopk", 48, 0.0, 4),
    ]
    assert all(t.log.steps == 4096 // 128 and t.log.seconds > 0 for t in s1.saes)
    assert float(s1.saes[-1].sae.threshold) > 0, "BatchTopK estimated its inference threshold"
    s2 = site_sweep(P, P.targets[0])
    assert s2.from_cache and s2.cache_key == s1.cache_key
    for a, b in zip(s1.saes, s2.saes, strict=True):
        assert torch.equal(a.sae.W_dec, b.sae.W_dec) and a.input_scale == b.input_scale
    # Notebook 02's parameters carry the same sweep settings -> the same entry (plus its own extra fields).
    S = ShrinkageParams.from_dict({**P.to_dict(), "toy_steps": 10})
    assert site_sweep(S, S.targets[0]).cache_key == s1.cache_key
    # Evaluation-only settings do not retrain.
    assert site_sweep(_params(eval_tokens=256), P.targets[0]).cache_key == s1.cache_key
    assert site_sweep(_params(lambdas_gated=(1.0, 2.0)), P.targets[0]).cache_key != s1.cache_key
    # The SAE seed keys the SAEs and changes them (their initialisation), not the data.
    s3 = site_sweep(_params(sae_seed=5), P.targets[0])
    assert s3.cache_key != s1.cache_key and not torch.equal(s3.saes[0].sae.W_dec, s1.saes[0].sae.W_dec)


def test_evaluate_site_rows_are_consistent(tiny_subject):
    P = _params()
    sweep = site_sweep(P, P.targets[0])
    rows = evaluate_site(P, sweep)
    assert len(rows) == 7
    assert [r.k for r in rows] == [0, 0, 0, 0, 0, 4, 4] and rows[5].l0 <= 4  # TopK: at most k per token
    assert all(r.step_ms > 0 and not r.source for r in rows)
    for r in rows:
        assert r.ce_spliced - r.ce_clean == pytest.approx(r.delta_lm_loss)
        assert r.loss_recovered == pytest.approx(1 - (r.ce_spliced - r.ce_clean) / (r.ce_zero - r.ce_clean))
        assert r.gamma * r.rescaling == pytest.approx(1.0)
        assert 0 <= r.dead_fraction <= 1 and 0 <= r.dense_fraction <= 1 and r.l0 >= 0
    assert len({r.ce_clean for r in rows}) == 1, "one clean CE per target"
    again = evaluate_site(P, sweep)
    assert [dataclasses.asdict(r) for r in again] == [dataclasses.asdict(r) for r in rows]


def test_run_sweeps_goes_target_by_target_and_says_what_came_from_the_cache(tiny_subject, monkeypatch):
    # A second subject (the same tiny model under another key), so that both targets' sites have a defined loss
    # recovered (zero-ablating most sites of a random model does not hurt it).
    from companion.backbone.runtime import context

    twin = dataclasses.replace(tiny_subject, name="twin", key="tiny-test-model-twin")
    monkeypatch.setitem(_SUBJECTS, ("twin", context().profile.name, "cpu"), twin)
    params = _params(
        targets=("tiny@blocks.0.hook_mlp_out", "twin@blocks.0.hook_mlp_out"),
        text_datasets={"tiny": "unused", "twin": "unused"},
    )
    first: list[str] = []
    rows = run_sweeps(params, log=first.append)
    assert [r.target for r in rows] == [t for t in params.targets for _ in range(7)]
    assert len(first) == 3 and "14 SAEs at 2 targets" in first[2]
    for target, line in zip(params.targets, first[:-1], strict=True):  # the last line: the run's summary
        sweep = site_sweep(params, target)
        assert line.startswith(f"{target}: d = 16, 7 SAEs trained now in ") and f"(key {sweep.cache_key})" in line
    again: list[str] = []
    assert run_sweeps(params, log=again.append) == rows
    assert all(
        f"{t}: d = 16, 7 SAEs from the cache in " in line for t, line in zip(params.targets, again[:-1], strict=True)
    )
    # The same rows as the two calls it makes, per target.
    assert rows[7:] == evaluate_site(params, site_sweep(params, params.targets[1]))


def test_an_sae_trained_elsewhere_is_evaluated_at_the_target_its_metadata_names(tiny_subject, tmp_path):
    # A cached SAE of the sweep is a SAELens folder recording model "tiny" and its hook: pointed at it, run_sweeps
    # evaluates it there, and its numbers are the ones it had as a member of the sweep.
    import shutil

    from companion.backbone.cache import default_cache

    P = _params()
    sweep = site_sweep(P, P.targets[0])
    folder = tmp_path / "elsewhere"
    shutil.copytree(default_cache().root / "sae" / sweep.cache_key / "sae_05", folder)  # the TopK member
    lines: list[str] = []
    rows = run_sweeps(_params(external_saes=(str(folder),)), log=lines.append)
    ext = [r for r in rows if r.source]
    assert len(rows) == 8 and len(ext) == 1 and ext[0].source == str(folder)
    assert ext[0].target == P.targets[0] and ext[0].architecture == "topk" and ext[0].k == 4
    assert ext[0].series == f"topk: {folder}" and math.isnan(ext[0].step_ms)
    member = rows[5]
    for f in ("l0", "loss_recovered", "fvu", "gamma", "ce_spliced"):
        assert getattr(ext[0], f) == pytest.approx(getattr(member, f), rel=1e-5), f
    assert any("trained elsewhere" in line for line in lines)
    # Or at a target given explicitly; a source that is no SAE says what it expected.
    rows = run_sweeps(_params(external_saes=(f"{folder} -> tiny@blocks.0.hook_mlp_out",)), log=lambda s: None)
    assert rows[-1].source.endswith("-> tiny@blocks.0.hook_mlp_out")
    with pytest.raises(Exception, match="neither a SAELens folder"):
        run_sweeps(_params(external_saes=(str(tmp_path),)), log=lambda s: None)


def test_pareto_frontier_and_interpolation():
    l0 = [10, 20, 5, 40, 15]
    score = [0.8, 0.85, 0.5, 0.95, 0.7]
    assert pareto_frontier(l0, score) == [2, 0, 1, 3]  # (15, 0.7) is beaten by (10, 0.8)
    assert interpolate_at_l0(l0, score, 10) == pytest.approx(0.8)
    mid = 0.8 + 0.05 * (math.log(14) - math.log(10)) / (math.log(20) - math.log(10))
    assert interpolate_at_l0(l0, score, 14) == pytest.approx(mid)
    assert math.isnan(interpolate_at_l0(l0, score, 100))


def _row(arch, l0, lr, gamma=1.0, lam=1.0):
    return SAEEval("t@s", arch, 8, lam, l0, lr, 0.1, 0.1, gamma, 0.9, 1 / gamma, 0.0, 0.0, 2.0, 5.0, 2.3)


def test_matched_l0_table_pairs_closest_baseline_in_log_l0():
    rows = [
        _row("gated", 10, 0.9, 1.0),
        _row("baseline", 12, 0.8, 0.8, lam=2.0),
        _row("baseline", 30, 0.85, 0.8),
        _row("baseline", 5, 0.6, 0.7, lam=4.0),
    ]
    t = matched_l0_table(rows)
    assert len(t) == 1
    r = t.iloc[0]
    assert r["baseline L0"] == 12 and r["gated loss rec."] == 0.9 and r["baseline λ"] == 2.0
    assert r["baseline frontier at gated L0"] == pytest.approx(
        0.6 + 0.2 * (math.log(10) - math.log(5)) / (math.log(12) - math.log(5))
    )


def test_paper_reference_table_has_the_papers_numbers():
    t = paper_reference_table()
    row = t[t["model, site"] == "Gemma-7B L20 attention"].iloc[0]
    assert (row["gated L0"], row["gated loss rec."], row["gated γ"]) == (18.7, 0.8655, 1.016)
    assert (row["baseline loss rec."], row["baseline γ"]) == (0.7838, 0.759)
    assert len(t) == 4


@pytest.mark.parametrize("profile", ["ci", "organism", "paper"])
def test_profiles_configure_both_notebooks_with_one_sweep(profile):
    from companion.backbone.profiles import load_profile
    from companion.backbone.runtime import resolve_params

    prof = load_profile(profile)
    a = resolve_params(ParetoParams, prof)
    b = resolve_params(ShrinkageParams, prof)
    for f in ParetoParams.field_names():
        assert getattr(a, f) == getattr(b, f), f"{profile}: {f} differs -> notebook 02 would retrain"
    assert len(a.targets) >= 2
    sites = {parse_target(t)[1] for t in a.targets}
    assert any("mlp" in s for s in sites) and any("resid" in s for s in sites)
    if profile == "paper":
        assert "gelu-1l@blocks.0.mlp.hook_post" in a.targets
        assert a.batch_size == 4096 and a.lr == 3e-4


def test_parameter_validation():
    with pytest.raises(ParameterError, match="<subject>@"):
        ParetoParams.from_dict({"targets": ["no-site"]})
    with pytest.raises(ParameterError, match="text dataset"):
        ParetoParams.from_dict({"targets": ["gelu-1l@blocks.0.mlp.hook_post"]})
    with pytest.raises(ParameterError, match="buffer_tokens"):
        ParetoParams.from_dict({"batch_size": 4096, "buffer_tokens": 4096})
    with pytest.raises(ParameterError, match="λ"):
        ParetoParams.from_dict({"lambdas_gated": [-1.0]})
    with pytest.raises(ParameterError, match="unknown"):
        ParetoParams.from_dict({"gated_expansion": 8})


def test_training_from_cached_activation_shards_gives_the_same_saes(tiny_subject):
    # The store's batches depend only on the order of rows, not on how the source chunks them, so streaming
    # from the disk shards must reproduce streaming from the model exactly.
    direct = site_sweep(_params(), "tiny@blocks.0.hook_mlp_out")
    from_disk = site_sweep(_params(cache_activations=True), "tiny@blocks.0.hook_mlp_out")
    assert from_disk.cache_key != direct.cache_key
    from companion.backbone.cache import default_cache

    assert len(default_cache().ls("activations")) == 1
    for a, b in zip(direct.saes, from_disk.saes, strict=True):
        for pa, pb in zip(a.sae.parameters(), b.sae.parameters(), strict=True):
            assert torch.equal(pa, pb)


def test_hf_text_batches_partition_and_rows(monkeypatch):
    """The paper profile's text stream, with a stand-in for the `datasets` package (no network here)."""
    import sys
    import types

    docs = [{"text": " ".join(f"w{i}" for _ in range(7))} for i in range(200)]

    class _Stream:
        def __init__(self, items):
            self.items = items

        def shuffle(self, seed, buffer_size):
            return self

        def __iter__(self):
            return iter(self.items)

    calls = []
    fake = types.SimpleNamespace(
        load_dataset=lambda name, config, split, streaming: calls.append((name, config)) or _Stream(docs),
        config=types.SimpleNamespace(USE_PARQUET_EXPORT=True, HF_UPDATE_DOWNLOAD_COUNTS=True),
    )
    monkeypatch.setitem(sys.modules, "datasets", fake)

    class _Tok:
        bos_token_id, eos_token_id = 0, 0

        def __call__(self, text):
            return {"input_ids": [int(w[1:]) + 1 for w in text.split()]}

    train = list(hf_text_batches("some/ds:cfg", _Tok(), 4 * 8 * 3, 8, 4, split="train"))
    held = list(hf_text_batches("some/ds:cfg", _Tok(), 4 * 8 * 2, 8, 4, split="heldout"))
    held_lm = list(hf_text_batches("some/ds:cfg", _Tok(), 4 * 8 * 2, 8, 4, split="heldout_lm"))
    assert calls[0] == ("some/ds", "cfg")
    assert [b.shape for b in train] == [(4, 8)] * 3 and [b.shape for b in held] == [(4, 8)] * 2
    assert all((b[:, 0] == 0).all() for b in train + held), "every row starts with BOS"
    doc_ids = lambda bs: {int(t) - 1 for b in bs for t in b[:, 1:].flatten() if t != 0}
    assert doc_ids(held) <= {i for i in range(200) if i % 20 == 0}
    assert doc_ids(held_lm) <= {i for i in range(200) if i % 20 == 10}  # the two held-out parts share no document
    assert not doc_ids(train) & {i for i in range(200) if i % 10 == 0}
