"""The peer SAE libraries the benchmark and the tests compare against: dictionary_learning and SAELens.

* :func:`dictionary_learning` — the dictionary_learning package, imported without its ``__init__`` (below); the
  tests use it too;
* :class:`DictionaryLearning`, :class:`SAELens`, :class:`SAELensSparse` — one training step of each peer, started
  from the weights of one of our SAEs, behind the interface benchmarks/bench_sae.py times (``name``, ``loss(x)``,
  ``step(x)``); :func:`available_peers` / :func:`peers_of` — those installed here, and those for an architecture.

dictionary_learning (PyPI ``dictionary-learning``) is installed by ``make setup`` without its declared dependencies
(``benchmarks/requirements-peers.txt``): its nnsight 0.3 requires torchvision, and PyPI's torchvision is built for
CUDA torch; next to the CPU torch it breaks ``import transformers``.  Its trainers and dictionaries need only torch and einops, but its
package ``__init__`` imports its activation buffer, which imports nnsight; :func:`dictionary_learning` imports the
package without running that ``__init__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import torch


def dictionary_learning() -> types.ModuleType:
    """The ``dictionary_learning`` package with ``.dictionary`` and ``.trainers`` imported (ImportError if absent)."""
    name = "dictionary_learning"
    pkg = sys.modules.get(name)
    if pkg is None:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("dictionary-learning is not installed (make setup installs it)")
        pkg = types.ModuleType(name)
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules[name] = pkg
    for sub in ("dictionary", "trainers"):
        importlib.import_module(f"{name}.{sub}")
    return pkg


# ------------------------------------------------------------------------------------------------ steps
class DictionaryLearning:
    name = "dictionary_learning"

    def __init__(self, sae, arch, lam, lr, batch):
        dictionary_learning()
        from dictionary_learning.trainers import (
            BatchTopKTrainer,
            GatedSAETrainer,
            JumpReluTrainer,
            StandardTrainer,
            TopKTrainer,
        )

        d, m = sae.d_in, sae.n_latents
        common = dict(
            steps=10**6,
            activation_dim=d,
            dict_size=m,
            layer=0,
            lm_name="bench",
            lr=lr,
            device="cpu",
            seed=0,
            warmup_steps=1,
        )
        with torch.no_grad():
            if arch == "baseline":
                self.tr = StandardTrainer(**common, l1_penalty=lam, sparsity_warmup_steps=None)
                ae = self.tr.ae
                ae.encoder.weight.copy_(sae.W_enc)
                ae.encoder.bias.copy_(sae.b_enc)
                ae.decoder.weight.copy_(sae.W_dec)
                ae.bias.copy_(sae.b_dec)
            elif arch == "gated":
                self.tr = GatedSAETrainer(**common, l1_penalty=lam, sparsity_warmup_steps=None)
                ae = self.tr.ae
                ae.encoder.weight.copy_(sae.W_gate)
                ae.gate_bias.copy_(sae.b_gate)
                ae.mag_bias.copy_(sae.b_mag)
                ae.r_mag.copy_(sae.r_mag)
                ae.decoder.weight.copy_(sae.W_dec)
                ae.decoder_bias.copy_(sae.b_dec)
            elif arch == "jumprelu":
                self.tr = JumpReluTrainer(
                    **common, bandwidth=sae.bandwidth, sparsity_penalty=lam, sparsity_warmup_steps=None
                )
                ae = self.tr.ae
                ae.W_enc.copy_(sae.W_enc.T)
                ae.b_enc.copy_(sae.b_enc)
                ae.W_dec.copy_(sae.W_dec.T)
                ae.b_dec.copy_(sae.b_dec)
                ae.threshold.copy_(sae.threshold)
            else:
                cls = TopKTrainer if arch == "topk" else BatchTopKTrainer
                self.tr = cls(**common, k=sae.k)
                ae = self.tr.ae
                ae.encoder.weight.copy_(sae.W_enc)
                ae.encoder.bias.copy_(sae.b_enc)
                ae.decoder.weight.copy_(sae.W_dec)
                ae.b_dec.copy_(sae.b_dec)
        self.n = 1  # past step 0, where its TopK trainers set b_dec to the batch's geometric median

    def loss(self, x) -> float:
        with torch.no_grad():
            return float(self.tr.loss(x, step=self.n))

    def step(self, x):
        self.tr.update(self.n, x)
        self.n += 1


class SAELens:
    name = "SAELens"
    sparse = False

    def __init__(self, sae, arch, lam, lr, batch):
        import sae_lens
        from sae_lens.config import SAETrainerConfig
        from sae_lens.training.sae_trainer import SAETrainer

        d, m = sae.d_in, sae.n_latents
        common = dict(d_in=d, d_sae=m, dtype="float32", device="cpu")
        if arch == "baseline":
            S = sae_lens.StandardTrainingSAE(sae_lens.StandardTrainingSAEConfig(**common, l1_coefficient=lam))
        elif arch == "gated":
            S = sae_lens.GatedTrainingSAE(sae_lens.GatedTrainingSAEConfig(**common, l1_coefficient=lam))
        elif arch == "jumprelu":
            S = sae_lens.JumpReLUTrainingSAE(
                sae_lens.JumpReLUTrainingSAEConfig(
                    **common, l0_coefficient=lam, jumprelu_bandwidth=sae.bandwidth, apply_b_dec_to_input=False
                )
            )
        elif arch == "topk":
            S = sae_lens.TopKTrainingSAE(
                sae_lens.TopKTrainingSAEConfig(
                    **common, k=sae.k, rescale_acts_by_decoder_norm=False, use_sparse_activations=self.sparse
                )
            )
        else:
            S = sae_lens.BatchTopKTrainingSAE(
                sae_lens.BatchTopKTrainingSAEConfig(**common, k=sae.k, rescale_acts_by_decoder_norm=False)
            )
        with torch.no_grad():
            S.W_enc.copy_((sae.W_gate if arch == "gated" else sae.W_enc).T)
            S.W_dec.copy_(sae.W_dec.T)
            S.b_dec.copy_(sae.b_dec)
            if arch == "gated":
                S.b_gate.copy_(sae.b_gate)
                S.b_mag.copy_(sae.b_mag)
                S.r_mag.copy_(sae.r_mag)
            else:
                S.b_enc.copy_(sae.b_enc)
            if arch == "jumprelu":
                S.threshold.copy_(sae.threshold)
        self.sae = S
        cfg = SAETrainerConfig(
            total_training_samples=10**9,
            train_batch_size_samples=batch,
            lr=lr,
            adam_beta1=0.0,
            adam_beta2=0.999,
            device="cpu",
            lr_end=lr,
        )
        self.tr = SAETrainer(cfg=cfg, sae=S, data_provider=iter(()))

    def loss(self, x) -> float:
        from sae_lens.saes.sae import TrainStepInput

        with torch.no_grad():
            out = self.sae.training_forward_pass(
                TrainStepInput(
                    sae_in=x,
                    coefficients=self.tr.get_coefficients(),
                    dead_neuron_mask=None,
                    n_training_steps=0,
                    is_logging_step=False,
                )
            )
        return float(out.loss)

    def step(self, x):
        self.tr._train_step(self.sae, x)
        self.tr.n_training_steps += 1


class SAELensSparse(SAELens):
    name = "SAELens sparse"
    sparse = True


def peers_of(arch: str, available: list[type]) -> list[type]:
    return [p for p in available if p is not SAELensSparse or arch == "topk"]


def available_peers() -> list[type]:
    out = []
    for cls, load in [(DictionaryLearning, dictionary_learning), (SAELens, lambda: __import__("sae_lens"))]:
        try:
            load()
            out.append(cls)
        except Exception as e:  # noqa: BLE001 - any import failure means "not usable here"
            print(f"  {cls.name}: not installed ({type(e).__name__}: {str(e).splitlines()[0][:80]})")
    if SAELens in out:
        out.append(SAELensSparse)
    return out
