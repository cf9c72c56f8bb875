"""charmlp: Hydra + Optuna sweeps for character-level MLP language models."""

__version__ = "0.1.0"
