"""The sweep commands, run as a user runs them (subprocesses, tiny data, few trials)."""
import json
import shutil
import time

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from conftest import run_cli

pytestmark = pytest.mark.slow


def sweep(names_file, sweep_dir, *extra, preset="smoke", n_trials=4):
    return run_cli("charmlp-train", "-m", f"+sweep={preset}", f"data.path={names_file}",
                   "trainer.steps=150", "trainer.eval_interval=50", "trainer.history_interval=50",
                   f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={n_trials}", *extra)


def load(sweep_dir, name="smoke"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir}/study.db")


@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory, names_file):
    d = tmp_path_factory.mktemp("sweep")
    r = sweep(names_file, d)
    assert r.returncode == 0, r.stderr
    return d


def test_results_csv_matches_the_study_trial_by_trial(done_sweep):
    study = load(done_sweep)
    df = pd.read_csv(done_sweep / "results.csv")
    assert len(df) == len(study.trials) == 4
    for t, row in zip(sorted(study.trials, key=lambda t: t.number), df.itertuples()):
        assert row.number == t.number and row.state == t.state.name
        assert row.value == pytest.approx(t.value) and row.dev_loss == pytest.approx(t.value)
        assert df.loc[row.Index, "params_model.n_embd"] == t.params["model.n_embd"]
        assert df.loc[row.Index, "params_model.n_hidden"] == t.params["model.n_hidden"]
        assert row.output_dir == f"trial_{t.number:04d}"  # relative: sweep dirs can move
        assert json.loads((done_sweep / f"trial_{t.number:04d}" / "metrics.json").read_text())["dev_loss"] == pytest.approx(t.value)


def test_best_config_is_exported_and_reruns_exactly(done_sweep, tmp_path):
    study = load(done_sweep)
    best = (done_sweep / "best.yaml").read_text()
    assert f"charmlp-rerun {done_sweep / f'trial_{study.best_trial.number:04d}'}" in best
    out = tmp_path / "rerun"
    r = run_cli("charmlp-rerun", str(done_sweep), "--best", "--out", str(out))
    assert r.returncode == 0, r.stderr
    dev = json.loads((out / "metrics.json").read_text())["dev_loss"]
    assert dev == study.best_value  # deterministic on CPU: the same number, not a close one


def test_rerun_with_test_split_and_extra_override(done_sweep, tmp_path):
    out = tmp_path / "rerun"
    r = run_cli("charmlp-rerun", str(done_sweep / "trial_0001"), "trainer.steps=100", "--test",
                "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 100 and "test_loss" in m
    assert "(original: not measured)" in r.stdout  # the trial never measured its test loss


def test_same_command_resumes_and_the_budget_is_a_total(tmp_path, names_file):
    assert sweep(names_file, tmp_path, n_trials=2).returncode == 0
    before = {p.name: (p / "metrics.json").read_bytes() for p in tmp_path.glob("trial_*")}
    r = sweep(names_file, tmp_path, n_trials=3)
    assert r.returncode == 0, r.stderr
    study = load(tmp_path)
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {n: (tmp_path / n / "metrics.json").read_bytes() for n in before} == before
    r = sweep(names_file, tmp_path, n_trials=3)  # budget already spent: nothing new
    assert r.returncode == 0 and len(load(tmp_path).trials) == 3


def test_grid_sweep_runs_each_point_once(tmp_path, names_file):
    r = sweep(names_file, tmp_path, "model.n_embd=choice(4,8)",
              "model.n_hidden=choice(16,32)", preset="grid", n_trials=10)
    assert r.returncode == 0, r.stderr
    study = load(tmp_path, "grid")
    points = {(t.params["model.n_embd"], t.params["model.n_hidden"]) for t in study.trials}
    assert len(study.trials) == 4 and points == {(4, 16), (4, 32), (8, 16), (8, 32)}


def test_a_resume_that_would_train_otherwise_is_refused(tmp_path, names_file):
    """Trials on other data, or with other fixed overrides, would be ranked with the study's
    finished ones as if comparable: the resume is refused, and the study left as it was."""
    assert sweep(names_file, tmp_path, n_trials=2).returncode == 0
    other = tmp_path / "other.txt"
    other.write_text(names_file.read_text().upper())
    r = sweep(other, tmp_path, "trainer.steps=200", n_trials=3)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert f"data.path: {names_file} -> {other}" in line and "trainer.steps: 150 -> 200" in line
    assert "not be comparable" in line and "hydra.sweeper.study_name" in line
    assert len(load(tmp_path).trials) == 2
    assert sweep(names_file, tmp_path, n_trials=3).returncode == 0  # the same setup resumes
    assert [t.state for t in load(tmp_path).trials] == [TrialState.COMPLETE] * 3
    # The same data by another path: the user says the trials stay comparable.
    alias = tmp_path / "alias.txt"
    alias.symlink_to(names_file)
    r = sweep(alias, tmp_path, "hydra.sweeper.allow_changed_overrides=true", n_trials=4)
    assert r.returncode == 0 and "allowed by hydra.sweeper.allow_changed_overrides" in r.stderr + r.stdout
    assert [t.state for t in load(tmp_path).trials] == [TrialState.COMPLETE] * 4


def test_a_sweep_dir_without_its_study_file_reads_from_its_trial_dirs(done_sweep, tmp_path, names_file):
    """study.db deleted (or not copied): the results come from the trial dirs, and a resume
    is refused (the study does not know those dirs) without leaving an empty study.db."""
    d = tmp_path / "copy"
    shutil.copytree(done_sweep, d)
    (d / "study.db").unlink()
    r = run_cli("charmlp-results", str(d))
    assert r.returncode == 0 and "reading the trial dirs instead" in r.stderr, r.stderr
    assert "4 trials (4 COMPLETE)" in r.stdout
    r = sweep(names_file, d)
    assert r.returncode == 1 and "does not know" in r.stderr
    assert not (d / "study.db").exists()
    assert "reading the trial dirs instead" in run_cli("charmlp-results", str(d)).stderr


def test_a_dead_trial_past_its_retries_fails_and_the_resume_goes_on(tmp_path, names_file):
    """Found dead by a resume (its worker on another host, silent past the grace period) with
    no retry left: FAIL with the reason. It crashed every resume (a FrozenTrial told)."""
    assert sweep(names_file, tmp_path, n_trials=2).returncode == 0
    t = load(tmp_path).ask()
    t.set_user_attr("worker", {"host": "elsewhere", "pid": 1, "inline": False})
    t.set_user_attr("heartbeat_at", time.time() - 60)
    r = sweep(names_file, tmp_path, "hydra.sweeper.max_retries=0", "hydra.sweeper.grace_period=30",
              n_trials=4)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    dead = load(tmp_path).trials[2]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["fail_reason"] == "its worker died (hydra.sweeper.max_retries=0)"
    assert [t.state for t in load(tmp_path).trials].count(TrialState.COMPLETE) == 3


def test_a_trial_asked_by_a_sweep_killed_before_claiming_it_is_recovered(tmp_path, names_file):
    """A SIGKILL in the first milliseconds can leave a RUNNING trial nobody claimed: a resume
    at once waits the seconds it takes to count as dead, instead of ending one trial short."""
    assert sweep(names_file, tmp_path, n_trials=2).returncode == 0
    load(tmp_path).ask()
    r = sweep(names_file, tmp_path, n_trials=3)
    assert r.returncode == 0, r.stderr
    ts = load(tmp_path).trials
    assert [t.state for t in ts].count(TrialState.COMPLETE) == 3
    assert ts[2].state == TrialState.FAIL and ts[2].user_attrs["not_counted"]
    assert "died before starting it" in ts[2].user_attrs["fail_reason"]


def test_foreign_trial_dirs_are_never_overwritten(tmp_path, names_file):
    (tmp_path / "trial_0000").mkdir()
    (tmp_path / "trial_0000" / "mine.txt").write_text("keep")
    r = sweep(names_file, tmp_path, n_trials=1)
    assert r.returncode != 0 and "does not know" in r.stderr + r.stdout
    assert (tmp_path / "trial_0000" / "mine.txt").read_text() == "keep"
    # The refusal created no study: a later reader finds none rather than an empty one.
    db = tmp_path / "study.db"
    assert not db.exists() or optuna.get_all_study_names(f"sqlite:///{db}") == []


@pytest.mark.parametrize("setting, says", [
    ("max_failure_rate=2", "hydra.sweeper.max_failure_rate=2 must be a number from 0 to 1"),
    ("direction=up", "hydra.sweeper.direction='up' must be minimize or maximize"),
    ("n_trials=-1", "hydra.sweeper.n_trials=-1 must be a positive integer"),
])
def test_a_bad_sweeper_setting_is_one_line_and_creates_no_study(tmp_path, names_file, setting, says):
    """Before: an AssertionError in the official plugin, Optuna's ValueError with a study.db
    left behind, an IndexError."""
    r = run_cli("charmlp-train", "-m", "+sweep=smoke", f"data.path={names_file}",
                f"hydra.sweep.dir={tmp_path}", f"hydra.sweeper.{setting}")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"charmlp-train: error: {says}"), r.stderr
    assert not (tmp_path / "study.db").exists()


def test_a_failing_sampler_stops_the_sweep_in_one_line_and_leaves_no_running_trial(tmp_path, names_file):
    """CmaEsSampler without its `cmaes` package fails once its start-up trials are done."""
    try:
        import cmaes  # noqa: F401
        pytest.skip("cmaes is installed here, so the sampler does not fail")
    except ImportError:
        pass
    r = sweep(names_file, tmp_path, "hydra/sweeper/sampler=cmaes", "hydra.sweeper.sampler.n_startup_trials=1",
              "hydra/launcher=basic", n_trials=3)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    said = [line for line in r.stderr.splitlines() if "sampler failed" in line]
    assert len(said) == 1, r.stderr
    assert not [t for t in load(tmp_path).trials if t.state == TrialState.RUNNING]


def test_basic_sweeper_multirun_is_collected(tmp_path, names_file):
    r = run_cli("charmlp-train", "-m", f"data.path={names_file}", "trainer.steps=100",
                "trainer.eval_interval=50", "model.n_embd=4,6", f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    r = run_cli("charmlp-results", str(tmp_path), "--format", "markdown")
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(tmp_path / "results.csv")
    assert sorted(df["params_model.n_embd"]) == [4, 6] and set(df.state) == {"COMPLETE"}
    assert "|" in r.stdout
