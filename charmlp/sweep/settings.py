"""The sweeper's own settings (hydra.sweeper.*), checked before a study is opened or created:
a value the sweep cannot run with is one line naming it, not an assertion deep inside the
official plugin or Optuna, and not a sweep that silently does something else."""
import os
from typing import Any

from omegaconf import ListConfig

from ..errors import is_integer, is_number, require


def check(n_trials: Any, n_jobs: Any, max_failure_rate: Any, timeout_min: Any, max_retries: Any,
          heartbeat_interval: Any, grace_period: Any, direction: Any,
          allow_changed_overrides: Any = False) -> None:
    key = "hydra.sweeper."
    require(is_integer(n_trials) and n_trials >= 1, key + "n_trials", n_trials,
            "a positive integer: the study's total of trials")
    require(is_integer(n_jobs) and (n_jobs >= 1 or n_jobs == -1), key + "n_jobs", n_jobs,
            "a positive integer (trials at once), or -1 for one per core")
    require(is_number(max_failure_rate) and 0 <= max_failure_rate <= 1, key + "max_failure_rate",
            max_failure_rate, "a number from 0 to 1")
    require(timeout_min is None or (is_number(timeout_min) and timeout_min > 0), key + "timeout_min",
            timeout_min, "a positive number of minutes, or null for no limit")
    require(is_integer(max_retries) and max_retries >= 0, key + "max_retries", max_retries,
            "an integer >= 0")
    for name, value in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
        require(is_number(value) and value > 0, key + name, value, "a positive number of seconds")
    require(isinstance(allow_changed_overrides, bool), key + "allow_changed_overrides",
            allow_changed_overrides, "true or false")
    for d in direction if isinstance(direction, (list, tuple, ListConfig)) else [direction]:
        require(str(getattr(d, "name", d)) in ("minimize", "maximize"), key + "direction", d,
                "minimize or maximize (a list of them for several objectives)")


def slots(n_jobs: int) -> int:
    """n_jobs=-1: one slot per core this process may run on."""
    if n_jobs != -1:
        return n_jobs
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
