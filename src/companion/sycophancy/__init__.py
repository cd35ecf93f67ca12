"""Sycophancy agreement rates (notebook 04; Perez et al. 2022 and nostalgebraist's base-model re-measurement).

``data`` (Anthropic's files: pinned, validated, downloaded), ``templates`` (prompts), ``scoring`` (per-item
log-probabilities), ``stats`` (both statistics with bootstrap intervals), ``published`` (reference numbers),
``experiment`` (models × datasets × templates), ``params``, ``plots``.
"""
