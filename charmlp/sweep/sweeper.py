"""The Hydra plugin entry point. Importing this stays cheap (Hydra scans plugins at every
start-up): the Optuna-backed implementation loads only when a sweep actually runs."""
import os
import sys
from typing import Any

from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig

from ..errors import CharmlpError
from . import settings
from .pruners import make_pruner


class SweepError(CharmlpError, CompactHydraException):
    """A CharmlpError raised by the sweep itself: Hydra prints these as one line, no traceback."""


class CharmlpSweeper(OptunaSweeper):
    """hydra/sweeper=charmlp: the official OptunaSweeper with charmlp's implementation."""

    def __init__(self, sampler: Any, direction: Any, storage: str | None, study_name: str | None,
                 n_trials: int, n_jobs: int, max_failure_rate: float,
                 custom_search_space: str | None, params: DictConfig | None,
                 heartbeat_interval: float = 30.0, grace_period: float = 120.0,
                 timeout_min: float | None = None, max_retries: int = 1, pruner: Any = None,
                 allow_changed_overrides: bool = False) -> None:
        from .impl import CharmlpSweeperImpl

        try:  # before the official plugin asserts on them, and before any study exists
            settings.check(n_trials, n_jobs, max_failure_rate, timeout_min, max_retries,
                           heartbeat_interval, grace_period, direction, allow_changed_overrides)
        except CharmlpError as e:
            raise SweepError(f"{app_name()}: error: {e}") from None
        self.sweeper = CharmlpSweeperImpl(
            _sampler(sampler), direction, storage, study_name, int(n_trials),
            settings.slots(int(n_jobs)), max_failure_rate,
            custom_search_space, params, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, timeout_min=timeout_min, max_retries=max_retries,
            allow_changed_overrides=allow_changed_overrides,
            pruner=make_pruner(pruner) if pruner else None,
            reseed=_reseeder(sampler))

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self.sweeper.sweep(arguments)
        except CharmlpError as e:
            raise SweepError(f"{app_name()}: error: {' '.join(str(e).splitlines())}") from None
        except KeyboardInterrupt as e:  # SIGTERM (SweepInterrupted) or Ctrl-C: batch recorded
            name = str(e) or "SIGINT"
            what = ("no trial was running" if self.sweeper.interrupted == 0 else
                    "the running trials are marked interrupted and queued again")
            print(f"{app_name()}: sweep stopped by {name}: {what}; fix: rerun the same command to "
                  "resume", file=sys.stderr)
            raise SystemExit(128 + (15 if name == "SIGTERM" else 2)) from None


def app_name() -> str:
    """The command that runs this sweep (charmlp-train, or any Hydra app using
    hydra/sweeper=charmlp), for its messages: argv[0], else Hydra's job name."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c") else ""
    if not name:
        from hydra.core.hydra_config import HydraConfig
        name = HydraConfig.get().job.name if HydraConfig.initialized() else "hydra"
    return name


SAMPLERS = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")


def _sampler(cfg: Any, **kwargs: Any) -> Any:
    return instantiate(cfg, _execution_whitelist_=SAMPLERS, **kwargs)


def _reseeder(cfg: Any):
    """A factory for the sampler with a seed derived from the configured one and the number
    of trials the study already holds (None when the sampler has no seed): a resumed sweep
    continues the sampler's stream instead of replaying its first points."""
    seed = cfg.get("seed") if isinstance(cfg, DictConfig) else None
    if seed is None:
        return None
    import numpy as np
    return lambda n: _sampler(cfg, seed=int(np.random.SeedSequence([int(seed), n]).generate_state(1)[0]))


__all__ = ["CharmlpSweeper", "SweepError", "Sweeper", "HydraContext", "TaskFunction"]
