"""Optuna sweeps through Hydra: the official sweeper, extended with resume, a total trial
budget shared by all workers, one directory per trial number, and every trial kept."""
