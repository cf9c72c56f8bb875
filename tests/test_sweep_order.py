"""The last trials of a sweep start longest first, so the slots end close together."""
import datetime as dt
import json
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from charmlp.sweep.order import LengthModel, longest_first
from conftest import run_cli

T0 = dt.datetime(2026, 1, 1)


def done(number, seconds, **params):
    dists = {k: (IntDistribution(1, 10**6) if isinstance(v, int) else FloatDistribution(1e-9, 1e9))
             for k, v in params.items()}
    return FrozenTrial(number=number, state=TrialState.COMPLETE, value=1.0, values=None,
                       datetime_start=T0, datetime_complete=T0 + dt.timedelta(seconds=seconds),
                       params=params, distributions=dists, user_attrs={}, system_attrs={},
                       intermediate_values={}, trial_id=number)


class Job:
    def __init__(self, name, **params):
        self.name, self.trial = name, type("T", (), {"params": params})()


def test_lengths_are_fitted_from_the_completed_trials():
    # seconds ~ steps * hidden, the way a step's cost multiplies
    trials = [done(i, 1e-6 * s * h, steps=s, hidden=h, lr=lr)
              for i, (s, h, lr) in enumerate([(1000, 64, 0.1), (4000, 64, 0.02), (2000, 256, 0.05),
                                              (8000, 128, 0.01), (1000, 512, 0.2), (3000, 32, 0.1)])]
    model = LengthModel(trials)
    assert model.seconds({"steps": 6000, "hidden": 300, "lr": 0.03}) == pytest.approx(1.8, rel=1e-6)
    jobs = [Job("short", steps=1000, hidden=100, lr=0.1), Job("long", steps=9000, hidden=700, lr=0.1),
            Job("mid", steps=5000, hidden=100, lr=0.1)]
    assert [j.name for j in longest_first(jobs, LengthModel(trials))] == ["long", "mid", "short"]


def test_a_trials_own_slot_time_counts_not_its_wait_for_a_slot():
    """A held trial's Optuna start is when it was asked; duration_s is its time in the slot."""
    trials = [done(i, 100.0, steps=s) for i, s in enumerate((100, 200, 400, 800))]
    for t, s in zip(trials, (1.0, 2.0, 4.0, 8.0)):
        t.user_attrs["duration_s"] = s
    assert LengthModel(trials).seconds({"steps": 1600}) == pytest.approx(16.0)


def test_without_enough_completed_trials_the_sampler_order_stays():
    trials = [done(0, 1.0, steps=100), done(1, 2.0, steps=200), done(2, 4.0, steps=400)]
    assert LengthModel(trials).seconds({"steps": 800}) is None  # 3 points: too few for a fit
    jobs = [Job("a", steps=10), Job("b", steps=10**6)]
    assert [j.name for j in longest_first(jobs, LengthModel(trials))] == ["a", "b"]
    trials.append(done(3, 8.0, steps=800))
    assert [j.name for j in longest_first(jobs, LengthModel(trials))] == ["b", "a"]
    # only categorical params: nothing to tell trials apart by
    assert LengthModel([done(i, float(i + 1), model=str(i)) for i in range(6)]).seconds({"model": "a"}) is None
    # a param the fit never saw, or one missing: no prediction, no reordering
    assert LengthModel(trials).seconds({"other": 3}) is None
    others = [Job("a", other=1), Job("b", other=2)]
    assert [j.name for j in longest_first(others, LengthModel(trials))] == ["a", "b"]


@pytest.mark.slow
def test_the_last_trials_of_a_sweep_start_longest_first(tmp_path, names_file):
    """Nine grid points on 2 slots; seed 41 asks 150, 600, 300 and 4800 steps last. Once no
    more than twice the slots are left, the sweep asks all four together and starts them
    longest first, each as a slot frees."""
    r = run_cli("charmlp-train", "-m", "+sweep=smoke", f"data.path={names_file}",
                f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.n_trials=9", "hydra/sweeper/sampler=grid",
                "hydra.sweeper.sampler.seed=41",
                "trainer.steps=choice(4800,75,150,300,600,1200,2400,110,220)",
                "model.n_hidden=16", "model.n_embd=4", "trainer.engine=reference",
                "trainer.eval_interval=75", "trainer.history_interval=75", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "the last 4 trials start longest first: 8, 6, 7, 5" in r.stdout + r.stderr
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path}/study.db")
    steps = {t.number: t.params["trainer.steps"] for t in study.trials}
    assert [steps[n] for n in (5, 6, 7, 8)] == [150, 600, 300, 4800] and len(steps) == 9
    started = {n: json.loads((tmp_path / f"trial_{n:04d}" / "metrics.json").read_text())["started_at"]
               for n in (5, 6, 7, 8)}
    assert started[8] < started[6] < started[7] < started[5]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.slow
def test_held_trials_of_a_stopped_sweep_are_queued_again_and_a_resume_runs_them(tmp_path, names_file):
    """SIGTERM while the last two trials are asked and one still waits for a slot: neither
    spends budget, both are queued again with their params, and the same command finishes
    the study with the budget's seven trials."""
    import signal
    import subprocess
    cmd = ["charmlp-train", "-m", "+sweep=smoke", f"data.path={names_file}",
           f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.n_trials=7", "hydra/sweeper/sampler=grid",
           "hydra.sweeper.sampler.seed=120", "trainer.steps=choice(4800,75,150,300,600,1200,2400)",
           "model.n_hidden=16", "model.n_embd=4", "trainer.engine=reference",
           "trainer.eval_interval=75", "trainer.history_interval=75"]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in driver.stdout:
        if "start longest first" in line:
            driver.send_signal(signal.SIGTERM)
            break
    driver.communicate(timeout=120)
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path}/study.db")
    stopped = {t.number: t for t in study.trials if t.number in (5, 6)}
    for t in stopped.values():
        assert t.state == TrialState.FAIL and t.user_attrs.get("not_counted"), t
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    # with them, the trial that was running on the other slot
    assert {150, 4800} <= {t.system_attrs["fixed_params"]["trainer.steps"] for t in waiting}
    r = run_cli(*cmd, timeout=300)
    assert r.returncode == 0, r.stderr
    done = [t for t in optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path}/study.db").trials
            if t.state == TrialState.COMPLETE]
    assert sorted(t.params["trainer.steps"] for t in done) == [75, 150, 300, 600, 1200, 2400, 4800]


def test_jobs_that_ended_before_a_stop_are_drained_with_their_slots():
    """A stop lands in wait(): jobs that had already ended are handed back (the sweep records
    a finished one instead of marking it interrupted and running it again)."""
    import threading
    from types import SimpleNamespace
    from charmlp.sweep.slots import Slots
    release = threading.Event()

    def launch(overrides, number):
        if number == 1:
            release.wait(30)  # still running at the stop
        return [f"result {number}"]

    slots = Slots(launch, 2, inline=False)
    slots.submit(SimpleNamespace(number=0), ("a=1",))
    slots.submit(SimpleNamespace(number=1), ("a=2",))
    deadline = time.monotonic() + 30
    while slots._done.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    ended = slots.drain()
    assert [(j.trial.number, j.result) for j in ended] == [(0, "result 0")]
    assert list(slots.running) == [1] and slots.free() == 1 and slots.drain() == []
    release.set()
