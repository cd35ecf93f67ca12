"""Sycophancy agreement rates (notebook 04; Perez et al. 2022 and nostalgebraist's base-model re-measurement).

``data`` (Anthropic's files: pinned, validated, downloaded), ``scoring`` (per-item log-probabilities under a
prompt template of :mod:`companion.models.templates`), ``stats`` (both statistics with bootstrap intervals),
``published`` (reference numbers), ``experiment`` (models × datasets × templates), ``params``, ``plots``.
"""
