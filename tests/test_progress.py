"""The sweep's closing summary: where the slots' time went."""
import re
import time

import optuna

from charmlp.sweep.progress import Progress


def shares(text: str) -> tuple[float, float, float]:
    m = re.search(r"core time: ([\d.]+)% training, slots busy ([\d.]+)%, idle ([\d.]+)% at the end", text)
    assert m, text
    return tuple(float(x) for x in m.groups())


def test_summary_splits_training_busy_and_the_idle_end(caplog):
    """2 slots for 10 s: one trial 0-6 s (5 s training), one 0-10 s (9 s). After the first
    ends no trial is left to start, so its slot idles 4 s: 70% training, 80% busy, 20% idle
    at the end."""
    study = optuna.create_study()
    now = time.time()
    p = Progress(total=2, slots=2, single_objective=True)
    p.t0 = now - 10
    p.no_more_trials()
    with caplog.at_level("INFO", logger="charmlp.sweep"):
        p.trial_done(study, 0, "COMPLETE", [2.0], now - 10, 6.0, {"wall_time": 5.0})
        p.trial_done(study, 1, "COMPLETE", [2.1], now - 10, 10.0, {"wall_time": 9.0})
        p.summary(study, "results.csv")
    training, busy, idle = shares(caplog.text)
    assert abs(training - 70) < 0.5 and abs(busy - 80) < 0.5 and abs(idle - 20) < 0.5


def test_trials_that_end_while_others_start_are_not_idle_time(caplog):
    study = optuna.create_study()
    now = time.time()
    p = Progress(total=3, slots=1, single_objective=True)
    p.t0 = now - 10
    with caplog.at_level("INFO", logger="charmlp.sweep"):
        p.trial_done(study, 0, "COMPLETE", [2.0], now - 10, 5.0, {"wall_time": 5.0})
        p.no_more_trials()
        p.trial_done(study, 1, "COMPLETE", [2.0], now - 5, 5.0, {"wall_time": 5.0})
        p.summary(study, "results.csv")
    training, busy, idle = shares(caplog.text)
    assert abs(training - 100) < 0.5 and idle < 0.5
