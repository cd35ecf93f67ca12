"""companion: reproducible notebooks for four mechanistic-interpretability results."""
__version__ = "0.1.0"
