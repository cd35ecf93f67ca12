"""Notebook 05: which SAE finds the planted features? Recovery of the organism's planted variables by single SAE
latents and k-sparse probes, against a dense-probe ceiling, a random-direction floor and the SAEs' reseed noise."""
