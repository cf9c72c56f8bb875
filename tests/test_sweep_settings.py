"""hydra.sweeper.* values the sweep cannot run with are refused in one line before any study
is opened (charmlp/sweep/settings.py); the CLI side is in test_sweep.py."""
import os

import pytest

from charmlp.errors import CharmlpError
from charmlp.sweep import settings

GOOD = dict(n_trials=4, n_jobs=2, max_failure_rate=0.25, timeout_min=None, max_retries=1,
            heartbeat_interval=30, grace_period=120, direction="minimize")


def test_the_defaults_and_edge_values_pass():
    settings.check(**GOOD)
    settings.check(**{**GOOD, "n_jobs": -1, "max_failure_rate": 1, "timeout_min": 0.05,
                      "max_retries": 0, "direction": ["minimize", "maximize"]})


@pytest.mark.parametrize("key, value", [
    ("n_trials", 0), ("n_trials", -1), ("n_trials", "abc"), ("n_trials", 2.5), ("n_trials", True),
    ("n_jobs", 0), ("n_jobs", -2), ("n_jobs", "x"),
    ("max_failure_rate", 2), ("max_failure_rate", -0.1), ("max_failure_rate", "half"),
    ("timeout_min", 0), ("timeout_min", -5), ("timeout_min", "soon"),
    ("max_retries", -1), ("max_retries", 0.5),
    ("heartbeat_interval", 0), ("grace_period", -1),
    ("direction", "up"), ("direction", ["minimize", "sideways"]),
    ("allow_changed_overrides", "yes"),
])
def test_a_bad_value_is_named_in_one_line(key, value):
    with pytest.raises(CharmlpError) as e:
        settings.check(**{**GOOD, key: value})
    msg = str(e.value)
    assert msg.startswith(f"hydra.sweeper.{key}=") and "must be" in msg and "\n" not in msg


def test_n_jobs_minus_one_is_a_slot_per_usable_core():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert settings.slots(-1) == cores and settings.slots(3) == 3


def test_a_stop_with_no_trial_running_says_so(monkeypatch, capsys):
    """SIGTERM after the last trial ended (a whole process group stopped at shutdown) used to
    say that running trials were marked interrupted."""
    from charmlp.sweep.sweeper import CharmlpSweeper
    sweeper = CharmlpSweeper.__new__(CharmlpSweeper)
    sweeper.sweeper = type("Impl", (), {"interrupted": 0})()
    sweeper.sweeper.sweep = lambda arguments: (_ for _ in ()).throw(KeyboardInterrupt("SIGTERM"))
    with pytest.raises(SystemExit) as e:
        sweeper.sweep([])
    assert e.value.code == 143
    assert "sweep stopped by SIGTERM: no trial was running; fix: rerun the same command" in capsys.readouterr().err
