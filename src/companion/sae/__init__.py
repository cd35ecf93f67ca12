"""Gated vs baseline sparse autoencoders (notebooks 01 and 02; Rajamanoharan et al. 2024, arXiv:2404.16014).

``autoencoders`` (the two architectures and their losses), ``step`` (the fast hand-derived training step),
``training`` (the paper's recipe and λ sweeps), ``activations`` (the shuffled activation buffer), ``metrics``
(L0, loss recovered, γ), ``toy`` (synthetic checks, the shrinkage toy), ``saelens`` (SAEs on disk in SAELens'
format), ``subjects`` (model + text), ``experiment`` (the notebooks' sweeps and tables), ``params``, ``plots``.
"""
