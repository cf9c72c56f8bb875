"""Faults, injected on purpose: trials that diverge or raise, too many failures, a sweep
killed mid-trial (SIGKILL, SIGTERM) and resumed, writes that fail half-way, and bad input.
Each checks the study's trial states, results.csv, the files left behind and the error line."""
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from conftest import TINY, run_cli

FAST = ["trainer.steps=100", "trainer.eval_interval=50", "trainer.history_interval=50"]
# One trial at a time, in the sweep's own process (joblib with one job runs in-process):
# cheap on 2 cores, and a signal to the sweep reaches the running trial.
SERIAL = ["hydra.sweeper.n_jobs=1"]


def sweep_cmd(names_file, sweep_dir, *extra, preset="smoke", n_trials=4, steps=FAST):
    return ["charmlp-train", "-m", f"+sweep={preset}", f"data.path={names_file}", *steps,
            f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={n_trials}", *SERIAL, *extra]


def load(sweep_dir, name="smoke") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir}/study.db")


def trials(sweep_dir, name="smoke") -> list[optuna.trial.FrozenTrial]:
    return sorted(load(sweep_dir, name).trials, key=lambda t: t.number)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root: its bytes and mtime, to prove nothing was rewritten."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def error_lines(stderr: str) -> list[str]:
    """stderr without the log lines: what a user reads as the error."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith("[") and "A new study created" not in line]


def assert_one_line(r: subprocess.CompletedProcess, message: str) -> None:
    err = error_lines(r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert any(message in line for line in err), r.stderr
    assert len(err) == 1, err


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*.tmp")]


# ---- trials that fail ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_sweep(tmp_path_factory, names_file):
    """A grid whose points diverge (lr 1e6), raise (n_hidden=0), fail to compose (model=nope)
    or complete; max_failure_rate=1 so the sweep runs them all."""
    d = tmp_path_factory.mktemp("mixed")
    r = run_cli(*sweep_cmd(names_file, d, "optimizer.lr=0.1,1e6", "model.n_hidden=16,0",
                           "model=mlp,nope", "model.n_embd=4", "trainer.max_loss=10",
                           "hydra.sweeper.max_failure_rate=1", preset="grid", n_trials=20))
    assert r.returncode == 0, r.stderr
    return d


def by_params(ts, **params):
    [t] = [t for t in ts if all(t.params[k] == v for k, v in params.items())]
    return t


def test_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(mixed_sweep):
    ts = trials(mixed_sweep, "grid")
    assert len(ts) == 8 and len({t.number for t in ts}) == 8
    ok = by_params(ts, **{"optimizer.lr": 0.1, "model.n_hidden": 16, "model": "mlp"})
    assert ok.state == TrialState.COMPLETE and ok.value > 0
    bad = by_params(ts, **{"optimizer.lr": 1e6, "model.n_hidden": 16, "model": "mlp"})
    assert bad.state == TrialState.FAIL
    assert "diverged" in bad.user_attrs["fail_reason"] and "max_loss=10" in bad.user_attrs["fail_reason"]
    # its run dir says so too, and no checkpoint of a diverged model is left behind
    out = mixed_sweep / f"trial_{bad.number:04d}"
    assert json.loads((out / "metrics.json").read_text())["status"] == "diverged"
    assert (out / "history.csv").is_file() and not (out / "model.pt").exists()
    df = pd.read_csv(mixed_sweep / "results.csv")
    row = df[df.number == bad.number].iloc[0]
    assert row.state == "FAIL" and "diverged" in row.fail_reason and pd.isna(row.value)
    assert df[df.number == ok.number].iloc[0].state == "COMPLETE"


def test_raising_trial_fails_with_the_error_message_kept(mixed_sweep):
    ts = trials(mixed_sweep, "grid")
    for lr in (0.1, 1e6):
        t = by_params(ts, **{"optimizer.lr": lr, "model.n_hidden": 0, "model": "mlp"})
        assert t.state == TrialState.FAIL
        assert "n_hidden=0 must be a positive integer" in t.user_attrs["fail_reason"]
        assert not (mixed_sweep / f"trial_{t.number:04d}" / "metrics.json").exists()
    df = pd.read_csv(mixed_sweep / "results.csv")
    assert len(df) == 8 and df.number.is_unique
    raised = df[(df["params_model.n_hidden"] == 0) & (df.params_model == "mlp")]
    assert len(raised) == 2 and raised.fail_reason.str.contains("n_hidden=0 must be").all()


def test_trial_whose_config_does_not_compose_fails_alone(mixed_sweep):
    """model=nope used to abort the whole batch and queue itself again forever."""
    ts = trials(mixed_sweep, "grid")
    nope = [t for t in ts if t.params["model"] == "nope"]
    assert len(nope) == 4
    for t in nope:
        assert t.state == TrialState.FAIL and not t.user_attrs.get("not_counted")
        assert "Could not find 'model/nope'" in t.user_attrs["fail_reason"]
        assert not (mixed_sweep / f"trial_{t.number:04d}").exists()
    assert not [t for t in ts if t.state in (TrialState.WAITING, TrialState.RUNNING)]


def test_the_same_failure_every_time_stops_the_sweep_early_and_a_fixed_resume_runs(tmp_path, names_file):
    """Every trial fails the same way (here n_hidden=0): the sweep stops after n_jobs + 2 = 3
    of them, not after max_failure_rate x 40 = 10; once fixed, the same sweep resumes."""
    cmd = sweep_cmd(names_file, tmp_path, preset="smoke", n_trials=40)
    r = run_cli(*cmd, "model.n_hidden=0")
    assert r.returncode not in (0, 2)
    assert_one_line(r, "sweep stopped: this run's first trials all failed the same way")
    fails = [t for t in trials(tmp_path) if t.state == TrialState.FAIL]
    assert len(fails) == 3 and len({t.user_attrs["fail_reason"] for t in fails}) == 1
    # They spent none of the budget (a config error, not a result) ...
    assert all(t.user_attrs.get("not_counted") and t.user_attrs.get("same_failure") for t in fails)
    # ... so, fixed, the same command runs all of n_trials (2 here, for time), without the
    # failures counting against max_failure_rate (3 of 2 would be past any rate).
    r = run_cli(*sweep_cmd(names_file, tmp_path, preset="smoke", n_trials=2))
    assert r.returncode == 0, r.stderr
    assert [t.state for t in trials(tmp_path)][3:] == [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_too_many_failures_stop_the_sweep_in_one_line(tmp_path, names_file):
    cmd = sweep_cmd(names_file, tmp_path, "optimizer.lr=1e6,0.1", "model.n_embd=4,8",
                    "model.n_hidden=16", "trainer.max_loss=10", preset="grid")
    r = run_cli(*cmd)
    assert r.returncode not in (0, 2) and "sweep stopped" in r.stderr
    assert_one_line(r, "more than hydra.sweeper.max_failure_rate=0.25")
    ts = trials(tmp_path, "grid")
    fails = [t for t in ts if t.state == TrialState.FAIL]
    assert len(fails) == 2 and all("diverged" in t.user_attrs["fail_reason"] for t in fails)
    df = pd.read_csv(tmp_path / "results.csv")  # the stopped sweep still wrote its table
    assert sorted(df.number) == [t.number for t in ts] and (df.state == "FAIL").sum() == 2
    # The same command again: already past the limit, so it stops before any new trial.
    before = snapshot(tmp_path)
    r = run_cli(*cmd)
    assert r.returncode == 1 and "sweep stopped" in r.stderr and "Traceback" not in r.stderr
    assert len(trials(tmp_path, "grid")) == len(ts)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k.startswith("trial_")} == \
        {k: v for k, v in before.items() if k.startswith("trial_")}


# ---- a sweep killed mid-trial, then resumed ----------------------------------------------
# Trials of ~1 s (the torch engine, not the much faster native one), so that trial 1 is surely
# still running when the signal lands.
SLOW_TRIAL = ["trainer.steps=400", "trainer.eval_interval=200", "trainer.engine=torch"]

def start_and_kill(cmd, sweep_dir: Path, sig: int, trial: str = "trial_0001", timeout: float = 120):
    """Start the sweep in its own session, wait until `trial` has started, send `sig` to the
    whole process group (as a scheduler or an OOM killer would), return the exit code."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not (sweep_dir / trial / ".hydra" / "config.yaml").exists():
            assert p.poll() is None, f"the sweep ended before {trial} started: {p.stderr.read()}"
            assert time.monotonic() < deadline, f"{trial} never started"
            time.sleep(0.05)
        os.killpg(p.pid, sig)
        _, err = p.communicate(timeout=60)
        return p.returncode, err
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def finished_dirs(sweep_dir: Path, ts) -> dict:
    return {n: snapshot(sweep_dir / f"trial_{n:04d}") for n in
            (t.number for t in ts if t.state in (TrialState.COMPLETE, TrialState.FAIL))
            if (sweep_dir / f"trial_{n:04d}").is_dir()}


def check_resumed(sweep_dir: Path, killed: int, n_trials: int, kept: dict, reason: str):
    ts = trials(sweep_dir)
    numbers = [t.number for t in ts]
    assert len(numbers) == len(set(numbers)) == n_trials + 1  # one retry, nothing else
    stale = ts[killed]
    assert stale.state == TrialState.FAIL and stale.user_attrs.get("not_counted") is True
    assert reason in stale.user_attrs["fail_reason"]
    retry = [t for t in ts if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].params == stale.params and retry[0].number > killed
    counted = [t for t in ts if not t.user_attrs.get("not_counted")]
    assert len(counted) == n_trials and all(t.state == TrialState.COMPLETE for t in counted)
    # finished trials kept byte for byte, the dead trial's dir not reused, one dir per trial
    assert {n: snapshot(sweep_dir / f"trial_{n:04d}") for n in kept} == kept
    for t in counted:
        assert json.loads((sweep_dir / f"trial_{t.number:04d}" / "metrics.json").read_text())["status"] == "completed"
    assert not (sweep_dir / f"trial_{killed:04d}" / "metrics.json").exists()
    dirs = sorted(int(p.name[6:]) for p in sweep_dir.glob("trial_*"))
    assert dirs == sorted(numbers)
    df = pd.read_csv(sweep_dir / "results.csv")
    assert list(df.number) == sorted(numbers) and df.number.is_unique
    assert (df.state == "COMPLETE").sum() == n_trials
    assert no_temp_files(sweep_dir)


@pytest.mark.slow
@pytest.mark.parametrize("launcher, reason, retries", [
    # trials in worker processes: the sweep was stopped, which uses up no retry (README)
    ("parallel", "the sweep process running it was killed", 0),
    # the trial ran in the sweep process itself: it may have been the trial's doing (OOM)
    ("basic", "its worker died", 1)])
def test_sigkill_mid_trial_then_the_same_command_resumes(tmp_path, names_file, launcher, reason, retries):
    cmd = sweep_cmd(names_file, tmp_path, f"hydra/launcher={launcher}", n_trials=3,
                    steps=SLOW_TRIAL)
    rc, _ = start_and_kill(cmd, tmp_path, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    ts = trials(tmp_path)
    assert [t.state for t in ts] == [TrialState.COMPLETE, TrialState.RUNNING]
    kept = finished_dirs(tmp_path, ts)
    assert list(kept) == [0]
    r = run_cli(*cmd)
    assert r.returncode == 0, r.stderr
    check_resumed(tmp_path, killed=1, n_trials=3, kept=kept, reason=reason)
    retry = next(t for t in trials(tmp_path) if t.user_attrs.get("retry_of") == 1)
    assert retry.user_attrs.get("retries", 0) == retries


def children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.slow
def test_a_sigkill_of_the_sweep_process_alone_takes_its_workers_with_it(tmp_path, names_file):
    """kill -9 of the sweep's pid, not its process group: its slot workers must not train on
    for nothing (the resume queues their trials again) and then wait forever."""
    from charmlp.sweep.liveness import start_time
    cmd = [c for c in sweep_cmd(names_file, tmp_path, steps=["trainer.steps=50000", "trainer.engine=torch"])
           if c not in SERIAL] + ["hydra.sweeper.n_jobs=2", "hydra/launcher=parallel"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"trial_000{n}" / ".hydra").exists() for n in (0, 1)):
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() else ""
            time.sleep(0.05)
        workers = children(p.pid)
        assert len(workers) >= 2
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        deadline = time.monotonic() + 10
        while any(start_time(w) is not None for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [w for w in workers if start_time(w) is not None] == []
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])  # SIGINT: Ctrl-C
def test_sigterm_records_the_batch_then_the_same_command_resumes(tmp_path, names_file, sig):
    cmd = sweep_cmd(names_file, tmp_path, n_trials=3,
                    steps=SLOW_TRIAL)
    rc, err = start_and_kill(cmd, tmp_path, sig)
    assert rc == 128 + sig, err
    assert f"sweep stopped by {sig.name}: the running trials are marked interrupted" in err
    assert "Traceback" not in err
    ts = trials(tmp_path)  # recorded before exit: failed (uncounted) and queued again
    assert [t.state for t in ts] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert ts[1].user_attrs["not_counted"] and "sweep was stopped" in ts[1].user_attrs["fail_reason"]
    df = pd.read_csv(tmp_path / "results.csv")
    assert list(df.state[:2]) == ["COMPLETE", "FAIL"]
    kept = finished_dirs(tmp_path, ts)
    r = run_cli(*cmd)
    assert r.returncode == 0, r.stderr
    check_resumed(tmp_path, killed=1, n_trials=3, kept=kept, reason="sweep was stopped")


# ---- atomic writes ---------------------------------------------------------------------------
@pytest.fixture
def failing_replace(monkeypatch):
    """failing_replace(name): every os.replace onto a file called `name` fails (disk full)."""
    import charmlp.atomic
    real = os.replace

    def arm(name: str):
        def replace(src, dst, *a, **kw):
            if Path(dst).name == name:
                raise OSError(28, "No space left on device")
            return real(src, dst, *a, **kw)
        monkeypatch.setattr(charmlp.atomic.os, "replace", replace)
    return arm


@pytest.mark.parametrize("name", ["metrics.json", "history.csv", "model.pt"])
def test_a_failed_write_leaves_the_old_run_files_whole(make_cfg, tmp_path, failing_replace, name):
    from charmlp.trainer import train
    train(make_cfg("trainer.steps=50", "trainer.eval_interval=50"), tmp_path)
    before = snapshot(tmp_path)
    failing_replace(name)
    with pytest.raises(OSError, match="No space left"):
        train(make_cfg("trainer.steps=100", "trainer.eval_interval=50", "model.n_embd=5"), tmp_path)
    assert snapshot(tmp_path)[name] == before[name]
    assert no_temp_files(tmp_path) and not list(tmp_path.glob(".*"))


def test_a_failed_results_write_leaves_the_old_table(mixed_sweep, tmp_path, failing_replace):
    from charmlp.results import collect, write_outputs
    df = collect(str(mixed_sweep))
    write_outputs(df, tmp_path)
    old = (tmp_path / "results.csv").read_bytes()
    failing_replace("results.csv")
    with pytest.raises(OSError):
        write_outputs(df.head(1), tmp_path)
    assert (tmp_path / "results.csv").read_bytes() == old and not list(tmp_path.glob(".*"))


def test_unreadable_data_is_one_line(tmp_path, monkeypatch):
    """Tests run as root in CI, where chmod 000 does not stop a read: fake the EACCES."""
    from charmlp.data import read_names
    from charmlp.errors import CharmlpError
    f = tmp_path / "n.txt"
    f.write_text("anna\nbob\n")
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied", str(self))))
    with pytest.raises(CharmlpError, match=r"cannot read .*Permission denied; fix: check data.path="):
        read_names(f)


# ---- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("trainer.batch_size=0", "trainer.batch_size=0 must be a positive integer"),
    ("trainer.steps=many", "trainer.steps='many' must be an integer"),
    ("trainer.steps=2.5", "trainer.steps=2.5 must be an integer"),
    ("trainer.max_loss=0", "trainer.max_loss=0.0 must be a positive number"),
    ("+trainer.stpes=10", "trainer.stpes is not a trainer setting"),
    ("data.block_size=0", "data.block_size=0 must be a positive integer"),
    ("model.n_embd=0", "model.n_embd=0 must be a positive integer"),
    ("optimizer.lr=-1", "optimizer.lr=-1 must be positive"),
])
def test_bad_config_is_one_clear_error_and_writes_nothing(make_cfg, tmp_path, override, message):
    from charmlp.errors import CharmlpError
    from charmlp.trainer import train
    with pytest.raises(CharmlpError) as e:
        train(make_cfg(override), tmp_path / "run")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_only_blank_lines_is_no_names(make_cfg, tmp_path):
    from charmlp.errors import CharmlpError
    from charmlp.trainer import train
    f = tmp_path / "blank.txt"
    f.write_text("\n  \n\t\n")
    with pytest.raises(CharmlpError, match="holds no names; fix"):
        train(make_cfg(f"data.path={f}"), tmp_path / "run")


def bad_input_cases(names_file: Path, tmp: Path, done: Path) -> dict:
    """Commands run as a user would: name -> (argv, exit code, message, dir that must stay
    exactly as it was, or must not appear)."""
    def single(*o):
        return ["charmlp-train", *TINY, f"hydra.run.dir={tmp / 'run'}", *o]

    def on_done(*extra):  # a sweep pointed at a finished sweep dir: it must stay untouched
        return ["charmlp-train", "-m", "+sweep=grid", f"data.path={names_file}", *TINY,
                f"hydra.sweep.dir={done}", *SERIAL, *extra]

    empty_db = tmp / "empty.db"
    optuna.create_study(study_name="empty", storage=f"sqlite:///{empty_db}")
    (tmp / "no_trials").mkdir()
    (tmp / "no_config" / ".hydra").mkdir(parents=True)
    return {
        "text_for_a_number": (single(f"data.path={names_file}", "trainer.steps=many"), 2,
                              "trainer.steps='many' must be an integer", tmp / "run"),
        "low_above_high": (on_done("model.n_embd=int(interval(9,3))"), 1,
                           "bad search space: `low <= high` must hold", done),
        "low_above_high_new_dir": (
            sweep_cmd(names_file, tmp / "never", "model.n_embd=int(interval(9,3))"), 1,
            "bad search space", tmp / "never"),
        "storage_unreachable": (on_done("hydra.sweeper.storage=postgresql://nobody:secret@127.0.0.1:1/x"), 1,
                                "cannot open Optuna storage 'postgresql://nobody:***@127.0.0.1:1/x'", done),
        "rerun_without_config": (["charmlp-rerun", str(tmp / "no_config")], 2,
                                 "has no saved config", tmp / "no_config"),
        "results_of_empty_dir": (["charmlp-results", str(tmp / "no_trials")], 2,
                                 "no runs found", tmp / "no_trials"),
        "results_of_empty_study": (["charmlp-results", f"sqlite:///{empty_db}", "--study", "empty",
                                    "--out", str(done)], 2, "no trials found", done),
        "results_of_missing_study": (["charmlp-results", f"sqlite:///{empty_db}", "--study", "nope",
                                      "--out", str(done)], 2, "nope", done),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, names_file, mixed_sweep):
    """Run every case once per module, two at a time (2 cores); the tests look results up."""
    tmp = tmp_path_factory.mktemp("bad")
    cases = bad_input_cases(names_file, tmp, mixed_sweep)
    before = {k: snapshot(c[3]) if c[3].exists() else None for k, c in cases.items()}
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(cases, pool.map(lambda c: run_cli(*c[0]), cases.values())))
    return cases, before, results


@pytest.mark.slow
@pytest.mark.parametrize("case", ["text_for_a_number", "low_above_high",
                                  "low_above_high_new_dir", "storage_unreachable",
                                  "rerun_without_config", "results_of_empty_dir",
                                  "results_of_empty_study", "results_of_missing_study"])
def test_bad_input_is_one_line_and_changes_nothing(bad_inputs, case):
    cases, before, results = bad_inputs
    argv, code, message, guarded = cases[case]
    r = results[case]
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    out = r.stdout + r.stderr
    assert "Traceback" not in out
    said = [line for line in out.splitlines() if message in line]
    assert len(said) == 1, out[-2000:]
    if argv[:2] != ["charmlp-train", *TINY[:1]]:  # sweeps and tools: the error is all of stderr
        assert error_lines(r.stderr) == said
    if case == "storage_unreachable":
        assert "secret" not in out
    if argv[0] == "charmlp-train" and "-m" not in argv:  # a failed single run: no results
        assert not [p for p in guarded.rglob("*") if p.suffix in (".json", ".pt", ".csv", ".tmp")]
    else:
        now = snapshot(guarded) if guarded.exists() else None
        assert now == before[case], f"{case} changed {guarded}"
