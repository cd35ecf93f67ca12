"""Real-model blockers of issue 11 on tiny local checkpoints: notebook 04's dtype and one-model-at-a-time release
(weakref), GPT-NeoX forwards stopped by a hook, and the SAE evaluation's disjoint held-out streams."""

import gc
import weakref

import pytest
import torch

from tiny_models import save_tiny


def _neox_dir(tmp_path, name, hidden=16, layers=2):
    from tests.rehearsal.builders import neox_tokenizer

    config = {"use_parallel_residual": True, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 0}
    return str(
        save_tiny(
            "neox",
            tmp_path / name,
            neox_tokenizer(),
            vocab=512,
            hidden_size=hidden,
            num_hidden_layers=layers,
            intermediate_size=4 * hidden,
            **config,
        )
    )


@pytest.fixture(scope="module")
def syco_data(tmp_path_factory):
    from tests.rehearsal.builders import sycophancy_files

    from companion.sycophancy import data as sd

    d = tmp_path_factory.mktemp("syco")
    for name, blob in sycophancy_files().items():
        (d / name).write_bytes(blob)
    return {k: sd.subsample(v, 2, 0) for k, v in sd.load_sycophancy_dir(d).items()}


def test_a_bridge_is_not_freed_by_del_alone(tmp_path):
    # Why notebook 04 must collect between models: the TransformerBridge is held by a reference cycle (a recursive
    # closure of its hook scan captures it), which only a collection frees.  The collector is off from before the load:
    # a collection that happened to run between the load and `del` (when depends on everything allocated before)
    # would free the cycle early, and `del` alone would then seem enough.
    from companion.models.loading import load_model

    path = _neox_dir(tmp_path, "a")
    gc.disable()
    try:
        model = load_model(path)
        ref = weakref.ref(model)
        del model
        assert ref() is not None, "del alone freed the bridge: the cycle this test documents is gone"
    finally:
        gc.enable()
    gc.collect()
    assert ref() is None


def test_sweep_releases_each_model_before_loading_the_next_and_uses_the_dtype(tmp_path, syco_data):
    from companion.sycophancy.experiment import load_for_sweep, measure_models
    from companion.sycophancy.params import SycophancyParams

    dirs = (_neox_dir(tmp_path, "m1"), _neox_dir(tmp_path, "m2", hidden=24), _neox_dir(tmp_path, "m3"))
    P = SycophancyParams(
        models=dirs,
        data="anthropic",
        dtype="bfloat16",
        device="cpu",
        templates=("paren",),
        recovery_templates=("paren",),
        n_bootstrap=10,
    )
    alive: list[weakref.ref] = []
    dtypes = []

    def load_checking_release(run, P):
        # Every earlier model must be gone before the next loads (the real loader runs right after).
        assert all(r() is None for r in alive), f"a previous model is still alive when {run.name} loads"
        model, n, planted = load_for_sweep(run, P)
        alive.append(weakref.ref(model))
        dtypes.append({p.dtype for p in model.parameters()})
        return model, n, planted

    out = measure_models(P, syco_data, load=load_checking_release)
    assert len(alive) == 3 and all(r() is None for r in alive)
    assert dtypes == [{torch.bfloat16}] * 3, "P.dtype reaches the loader"
    assert sorted(out.n_params) == sorted(dirs) and out.n_params[dirs[1]] > out.n_params[dirs[0]]
    assert {s.model for s in out.stats} == set(dirs)


def test_hook_stop_ends_a_gpt_neox_forward_and_matches_the_full_forward(tmp_path):
    from companion.models.loading import load_model
    from companion.models.scoring import run_hooks_then_stop

    model = load_model(_neox_dir(tmp_path, "n", layers=4))
    toks = model.to_tokens("Hello world, this is the city.")
    got = {}

    def grab(x, hook=None):
        got["x"] = x.detach().clone()

    run_hooks_then_stop(model, toks, [("blocks.1.hook_resid_post", grab)])
    _, cache = model.run_with_cache(toks, names_filter=lambda n: n == "blocks.1.hook_resid_post")
    assert torch.allclose(got["x"], cache["blocks.1.hook_resid_post"])
    # The stop is an exception from the last hook: a hook on a later block never runs.
    seen = []
    model.add_hook("blocks.3.hook_resid_post", lambda x, hook=None: seen.append(1))
    try:
        run_hooks_then_stop(model, toks, [("blocks.1.hook_resid_post", grab)])
    finally:
        model.reset_hooks()
    assert seen == []


def test_sae_evaluation_reads_two_disjoint_held_out_parts():
    from companion.sae.evaluation import heldout_batches
    from companion.sae.params import ParetoParams
    from companion.sae.subjects import Subject, document_split

    asked = []

    def batches(n_tokens, seq_len, batch_size, split, seed):
        asked.append((split, seed))
        return iter([torch.zeros(batch_size, seq_len, dtype=torch.long)])

    P = ParetoParams(
        targets=("organism:backdoor@blocks.0.hook_resid_pre",),
        eval_tokens=64,
        eval_lm_tokens=64,
        eval_seq_len=8,
        model_batch_size=2,
        train_tokens=4096,
        batch_size=128,
        buffer_tokens=1024,
    )
    acts, lm = heldout_batches(P, Subject("s", "k", None, (), batches))
    list(acts)
    assert sorted(s for s, _ in asked) == ["heldout", "heldout_lm"]  # was "heldout" twice, seeds 1 apart: overlapping
    assert [document_split(i) for i in range(0, 40, 10)] == ["heldout", "heldout_lm", "heldout", "heldout_lm"]
    assert {document_split(i) for i in range(40) if i % 10} == {"train"}
