"""The sweeper's own settings (hydra.sweeper.*), checked before a study is opened or created:
a value the sweep cannot run with is one line naming it, not an assertion deep inside the
official plugin or Optuna, and not a sweep that silently does something else."""
import os
from typing import Any

from omegaconf import ListConfig

from ..errors import CharmlpError


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return _number(value) and float(value).is_integer()


def _fail(key: str, value: Any, must: str) -> None:
    raise CharmlpError(f"hydra.sweeper.{key}={value!r} {must}")


def check(n_trials: Any, n_jobs: Any, max_failure_rate: Any, timeout_min: Any, max_retries: Any,
          heartbeat_interval: Any, grace_period: Any, direction: Any,
          allow_changed_overrides: Any = False) -> None:
    if not _integer(n_trials) or n_trials < 1:
        _fail("n_trials", n_trials, "must be a positive integer: the study's total of trials")
    if not _integer(n_jobs) or not (n_jobs >= 1 or n_jobs == -1):
        _fail("n_jobs", n_jobs, "must be a positive integer (trials at once), or -1 for one per core")
    if not _number(max_failure_rate) or not 0 <= max_failure_rate <= 1:
        _fail("max_failure_rate", max_failure_rate, "must be a number from 0 to 1")
    if timeout_min is not None and (not _number(timeout_min) or timeout_min <= 0):
        _fail("timeout_min", timeout_min, "must be a positive number of minutes, or null for no limit")
    if not _integer(max_retries) or max_retries < 0:
        _fail("max_retries", max_retries, "must be an integer >= 0")
    for key, value in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
        if not _number(value) or value <= 0:
            _fail(key, value, "must be a positive number of seconds")
    if not isinstance(allow_changed_overrides, bool):
        _fail("allow_changed_overrides", allow_changed_overrides, "must be true or false")
    for d in direction if isinstance(direction, (list, tuple, ListConfig)) else [direction]:
        if str(getattr(d, "name", d)) not in ("minimize", "maximize"):
            _fail("direction", d, "must be minimize or maximize (a list of them for several objectives)")


def slots(n_jobs: int) -> int:
    """n_jobs=-1: one slot per core this process may run on."""
    if n_jobs != -1:
        return n_jobs
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
