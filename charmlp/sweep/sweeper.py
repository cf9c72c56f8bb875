"""The Hydra plugin entry point. Importing this stays cheap (Hydra scans plugins at every
start-up): the Optuna-backed implementation loads only when a sweep actually runs."""
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig


class CharmlpSweeper(OptunaSweeper):
    """hydra/sweeper=charmlp: the official OptunaSweeper with charmlp's implementation."""

    def __init__(self, sampler: Any, direction: Any, storage: str | None, study_name: str | None,
                 n_trials: int, n_jobs: int, max_failure_rate: float,
                 custom_search_space: str | None, params: DictConfig | None,
                 heartbeat_interval: float = 30.0, grace_period: float = 120.0) -> None:
        from .impl import CharmlpSweeperImpl

        sampler = instantiate(sampler, _execution_whitelist_=(
            "hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*"))
        self.sweeper = CharmlpSweeperImpl(
            sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate,
            custom_search_space, params, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period)


__all__ = ["CharmlpSweeper", "Sweeper", "HydraContext", "TaskFunction"]
