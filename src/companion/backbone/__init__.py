"""The notebook backbone: what every notebook stands on, whatever it reproduces.

Parameters (``params``), profiles (``profiles`` and ``profiles/*.yaml``), the run context a notebook starts with
(``runtime.start``), figures with provenance and their regression check (``figures``, ``figure_check``), the
on-disk cache (``cache``, ``atomic``, ``codegraph``), the runner behind ``make figures`` (``runner``), forks
(``fork``) and the ``companion`` command (``cli``).  Nothing here computes a result.
"""
