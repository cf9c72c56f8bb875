"""Many workers on one study: two sweep processes share a PostgreSQL or journal-file study and
together finish exactly its budget; workers started at the same moment on a new database all
get through; a sweep through submitit's launcher keeps its trial dirs."""
import json
import multiprocessing
import os
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from optuna.trial import TrialState

from charmlp.sweep import budget, liveness
from charmlp.sweep.liveness import claim, identity, is_stale, others_running, sweep_died_here
from charmlp.sweep.storage import open_storage
from charmlp.train import CONF_DIR
from conftest import run_cli

POSTGRES = os.environ.get("CHARMLP_TEST_POSTGRES", "postgresql://postgres:charmlp@127.0.0.1:5432/charmlp")
FAST = ["trainer.steps=100", "trainer.eval_interval=50", "trainer.history_interval=50"]


# Trials of 1-2 s (torch engine) so that both workers, started together, get some of them
# even when one starts seconds after the other (trials of 0.5 s let the first take them all).
WORKER_TRIAL = ["trainer.steps=2000", "trainer.eval_interval=1000", "trainer.engine=torch"]


def worker_cmd(names_file, sweep_dir, storage, study, seed, n_trials, trial=tuple(WORKER_TRIAL)):
    return ["charmlp-train", "-m", "+sweep=smoke", f"data.path={names_file}", *trial,
            f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.storage={storage}",
            f"hydra.sweeper.study_name={study}", f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.n_jobs=1", "hydra/launcher=basic", f"hydra.sweeper.sampler.seed={seed}"]


def run_workers(cmds, timeout=300):
    """Start all commands at once and wait for every one; each must exit 0."""
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    try:
        errs = [p.communicate(timeout=timeout)[1] for p in procs]
    finally:  # a timeout leaves no worker behind
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, err in zip(procs, errs):
        assert p.returncode == 0, err[-3000:]


def check_shared_study(storage: str, study: str, sweep_dir: Path, n_trials: int, workers: int = 2):
    ts = optuna.load_study(study_name=study, storage=open_storage(storage)).trials
    numbers = [t.number for t in ts]
    assert len(numbers) == len(set(numbers))
    done = [t for t in ts if t.state == TrialState.COMPLETE]
    assert len(done) == n_trials
    # Extra trials can only be ones a racing worker asked past the budget, failed uncounted.
    for t in ts:
        if t.state != TrialState.COMPLETE:
            assert t.state == TrialState.FAIL and t.user_attrs.get("not_counted"), t
            assert "over budget" in t.user_attrs["fail_reason"]
    pids = {t.user_attrs["worker"]["pid"] for t in done}
    assert len(pids) == workers, f"{workers} workers should have run trials, not {len(pids)}"
    dirs = sorted(int(p.name[6:]) for p in sweep_dir.glob("trial_*"))
    assert dirs == sorted(t.number for t in done)  # one dir per trial that ran, by number
    for t in done:
        metrics = json.loads((sweep_dir / f"trial_{t.number:04d}" / "metrics.json").read_text())
        assert metrics["dev_loss"] == t.value
    out = sweep_dir / "table"
    r = run_cli("charmlp-results", storage, "--study", study, "--out", str(out))
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out / "results.csv")
    assert sorted(df.number) == sorted(numbers) and (df.state == "COMPLETE").sum() == n_trials


@pytest.fixture(scope="module")
def postgres() -> str:
    try:
        import psycopg2
        psycopg2.connect(POSTGRES, connect_timeout=3).close()
    except Exception as e:  # noqa: BLE001 -- any reason means: no server to test against
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES} ({str(e).strip().splitlines()[0]}); "
                    "start it with `bash .ci/postgres.sh`")
    return POSTGRES


@pytest.fixture
def new_database(postgres):
    """new_database() -> the URL of a database created just now, so Optuna's schema isn't there
    yet; all are dropped after the test."""
    import psycopg2

    admin = psycopg2.connect(postgres)
    admin.autocommit = True
    names = []

    def create() -> str:
        names.append(f"charmlp_test_{uuid.uuid4().hex[:10]}")
        admin.cursor().execute(f"CREATE DATABASE {names[-1]}")
        return postgres.rsplit("/", 1)[0] + "/" + names[-1]

    yield create
    for name in names:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def _open_study_and_run_a_trial(url: str, barrier, errors) -> None:
    """One worker: what a sweep does first (open the storage, create or load the study), then
    one trial, so the study it got is known to work."""
    try:
        barrier.wait(timeout=300)  # all workers leave this line together (slow starts on a busy machine)
        study = optuna.create_study(study_name="together", storage=open_storage(url),
                                    load_if_exists=True)
        trial = study.ask()
        study.tell(trial, trial.number)
    except BaseException as e:  # noqa: BLE001 -- the parent reports it
        errors.put(f"{type(e).__name__}: {e}".splitlines()[0])
        raise SystemExit(1)


@pytest.mark.slow
def test_workers_started_together_on_new_databases_all_open_the_study(new_database):
    """Four workers start at the same instant on a database that has no Optuna schema yet; five
    rounds. Without a lock around the schema creation, most rounds lose workers to
    UniqueViolation in PostgreSQL's catalog."""
    ctx = multiprocessing.get_context("fork")
    for _ in range(5):
        url = new_database()
        barrier, errors = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_study_and_run_a_trial, args=(url, barrier, errors))
                 for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=300)
            if p.exitcode is None:  # hung: don't leave it behind
                p.kill()
        failures = [errors.get() for _ in range(errors.qsize())]
        assert [p.exitcode for p in procs] == [0] * 4, failures
        trials = optuna.load_study(study_name="together", storage=open_storage(url)).trials
        assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # one study, not four
        assert all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.slow
def test_four_sweep_workers_started_together_on_a_new_database(new_database, tmp_path, names_file):
    """The README's N-machine recipe as users run it: charmlp-train workers started at once."""
    url = new_database()
    # 600 s: four Hydra+torch start-ups at once took 5-7 minutes on a 2-core machine under load.
    run_workers([worker_cmd(names_file, tmp_path, url, "together", seed, n_trials=4, trial=FAST)
                 for seed in range(4)], timeout=600)
    ts = optuna.load_study(study_name="together", storage=open_storage(url)).trials
    done = [t for t in ts if t.state == TrialState.COMPLETE]
    assert len(done) == 4 and len({t.number for t in ts}) == len(ts)
    assert all(t.state == TrialState.COMPLETE or t.user_attrs.get("not_counted") for t in ts)


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(postgres, tmp_path, names_file):
    study = f"test_{uuid.uuid4().hex[:10]}"
    try:
        run_workers([worker_cmd(names_file, tmp_path, postgres, study, seed, n_trials=4)
                     for seed in (1, 2)])
        check_shared_study(postgres, study, tmp_path, n_trials=4)
    finally:
        try:
            optuna.delete_study(study_name=study, storage=open_storage(postgres))
        except Exception:  # noqa: BLE001 -- cleanup only
            pass


@pytest.mark.slow
def test_two_workers_share_one_journal_file(tmp_path, names_file):
    storage = f"journal://{tmp_path / 'db' / 'study.log'}"  # journal:///abs/path
    run_workers([worker_cmd(names_file, tmp_path, storage, "shared", seed, n_trials=4)
                 for seed in (1, 2)])
    check_shared_study(storage, "shared", tmp_path, n_trials=4)


@pytest.mark.slow
def test_submitit_launcher_keeps_trial_dirs(tmp_path, names_file):
    r = run_cli("charmlp-train", "-m", "+sweep=smoke", "hydra/launcher=submitit_local",
                f"data.path={names_file}", *FAST, f"hydra.sweep.dir={tmp_path}",
                "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2")
    assert r.returncode == 0, r.stderr[-3000:]
    ts = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path}/study.db").trials
    assert sorted(t.number for t in ts) == [0, 1]
    assert all(t.state == TrialState.COMPLETE for t in ts)
    for t in ts:
        out = tmp_path / f"trial_{t.number:04d}"
        assert t.user_attrs["output_dir"] == out.name  # relative: sweep dirs can move
        assert json.loads((out / "metrics.json").read_text())["dev_loss"] == t.value
        assert t.intermediate_values  # the submitit job reported to its own Optuna trial
    assert list((tmp_path / ".submitit").rglob("*_result.pkl"))  # it really went through submitit
    assert sorted(pd.read_csv(tmp_path / "results.csv").state) == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize("launcher", ["slurm", "basic", "submitit_local", "parallel"])
def test_presets_compose_with_any_launcher(launcher):
    """The presets used to set hydra.launcher.n_jobs, which only joblib has."""
    with initialize_config_dir(config_dir=CONF_DIR):
        cfg = compose("train", ["+sweep=embed_hidden", f"hydra/launcher={launcher}",
                                "hydra.sweeper.n_jobs=8"], return_hydra_config=True)
    launcher_cfg = cfg.hydra.launcher
    if launcher == "slurm":
        assert launcher_cfg._target_.endswith("SlurmLauncher")
        assert (launcher_cfg.cpus_per_task, launcher_cfg.tasks_per_node, launcher_cfg.mem_gb,
                launcher_cfg.timeout_min, launcher_cfg.array_parallelism) == (2, 1, 4, 60, 8)
        assert launcher_cfg.submitit_folder == "outputs/sweeps/embed_hidden/.submitit/%j"
    if launcher == "parallel":
        assert launcher_cfg.n_jobs == 8


# ---- liveness: which RUNNING trials are dead ---------------------------------------------
GRACE = 120.0


def running(worker: dict, beat_age: float, now: float = 1e9):
    """A FrozenTrial-like record of a RUNNING trial whose last heartbeat is beat_age s old."""
    return SimpleNamespace(state=TrialState.RUNNING, datetime_start=None,
                           user_attrs={"worker": worker, "heartbeat_at": now - beat_age})


@pytest.fixture(scope="module")
def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.fixture
def live_child():
    p = subprocess.Popen(["sleep", "60"])
    yield p
    p.kill()
    p.wait()


def _after_fork(url: str, parent_storage: int, queue) -> None:
    import signal
    from charmlp.sweep import storage
    from charmlp.sweep.launcher import _worker_start
    _worker_start(os.getppid(), True)
    queue.put((id(storage.open_storage(url)) != parent_storage,
               [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == [signal.SIG_DFL] * 2))


def test_a_worker_forked_from_the_sweep_opens_its_own_storage_and_takes_signals(tmp_path):
    """The slots' workers are forked from the sweep process (launcher.prestart), which has the
    study open and SIGTERM handled: a worker must open its own connection (a SQLite handle or
    a PostgreSQL socket must not serve two processes), and SIGTERM and Ctrl-C end it."""
    from charmlp.sweep import interrupts
    url = f"sqlite:///{tmp_path}/s.db"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()
    with interrupts.handled():
        p = ctx.Process(target=_after_fork, args=(url, id(open_storage(url)), queue))
        p.start()
    p.join(60)
    assert p.exitcode == 0 and queue.get() == (True, True)


def test_claim_records_host_boot_namespace_pid_and_start_time():
    attrs = {}
    claim(SimpleNamespace(set_user_attr=attrs.__setitem__))
    w = attrs["worker"]
    assert (w["host"], w["pid"]) == (liveness.HOST, os.getpid())
    assert w["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert w["pid_namespace"] == os.readlink("/proc/self/ns/pid")
    # Field 22 of /proc/self/stat, read here the plain way (no parentheses in "python").
    assert w["start_time"] == int(Path("/proc/self/stat").read_text().split()[21])
    assert abs(attrs["heartbeat_at"] - time.time()) < 5


def test_a_trial_on_another_host_is_dead_only_after_the_grace_period(dead_pid):
    other = {**identity(dead_pid), "host": "elsewhere"}
    assert not is_stale(running(other, beat_age=GRACE - 1), GRACE, now=1e9)
    assert is_stale(running(other, beat_age=GRACE + 1), GRACE, now=1e9)


@pytest.mark.parametrize("field, value", [("boot_id", "another-boot"),
                                          ("pid_namespace", "pid:[1]"),
                                          ("boot_id", None), ("start_time", None)])
def test_a_missing_pid_settles_nothing_unless_surely_the_same_machine_and_namespace(
        dead_pid, field, value):
    """Same host name, pid gone here, but recorded in another boot or another container's pid
    namespace (or by a worker that recorded no ids): that pid means nothing here, so only the
    heartbeat counts. A missing start time alone is no such doubt: the machine is the same."""
    worker = {**identity(dead_pid), field: value}
    if field == "start_time":
        assert is_stale(running(worker, beat_age=0), GRACE, now=1e9)
        return
    assert not is_stale(running(worker, beat_age=0), GRACE, now=1e9)
    assert is_stale(running(worker, beat_age=GRACE + 1), GRACE, now=1e9)


def test_old_records_with_host_and_pid_only_wait_for_the_heartbeat(dead_pid):
    worker = {"host": liveness.HOST, "pid": dead_pid}
    assert not is_stale(running(worker, beat_age=0), GRACE, now=1e9)


def test_a_trial_nobody_claimed_is_dead_after_seconds_not_the_grace_period():
    """Asked, and its sweep process killed before the claim (the first milliseconds)."""
    from datetime import datetime
    from charmlp.sweep.liveness import UNCLAIMED_GRACE, unclaimed_wait
    now = 1e9
    t = SimpleNamespace(state=TrialState.RUNNING, user_attrs={},
                        datetime_start=datetime.fromtimestamp(now - UNCLAIMED_GRACE + 2))
    assert not is_stale(t, GRACE, now=now) and unclaimed_wait([t], now=now) == pytest.approx(2)
    t.datetime_start = datetime.fromtimestamp(now - UNCLAIMED_GRACE - 1)
    assert is_stale(t, GRACE, now=now) and unclaimed_wait([t], now=now) == 0
    claimed = running(identity(os.getpid()), beat_age=UNCLAIMED_GRACE + 1, now=now)
    assert not is_stale(claimed, GRACE, now=now) and unclaimed_wait([claimed], now=now) == 0


def test_a_vanished_process_on_this_machine_is_dead_at_once(dead_pid):
    assert is_stale(running(identity(dead_pid), beat_age=0), GRACE, now=1e9)


def test_only_a_gone_sweep_here_whose_trial_had_its_own_worker_was_merely_stopped(dead_pid, live_child):
    """The sweep process died (SIGKILL) and its trial ran in a worker process: the trial is
    queued again without using a retry. Inline (the basic launcher: the trial may have killed
    it), alive, elsewhere or an old record without `inline`: not this case."""
    assert sweep_died_here(running({**identity(dead_pid), "inline": False}, beat_age=0))
    assert not sweep_died_here(running({**identity(dead_pid), "inline": True}, beat_age=0))
    assert not sweep_died_here(running(identity(dead_pid), beat_age=0))
    assert not sweep_died_here(running({**identity(live_child.pid), "inline": False}, beat_age=0))
    other = {**identity(dead_pid), "inline": False, "host": "elsewhere"}
    assert not sweep_died_here(running(other, beat_age=10 * GRACE))


def test_a_live_process_on_this_machine_is_alive_whatever_its_heartbeat(live_child):
    assert not is_stale(running(identity(live_child.pid), beat_age=10 * GRACE), GRACE, now=1e9)


def test_a_reused_pid_does_not_keep_a_dead_trial_alive(live_child):
    """The pid runs, but a process started at another time holds it: the worker is gone."""
    worker = identity(live_child.pid)
    worker["start_time"] -= 1
    assert is_stale(running(worker, beat_age=0), GRACE, now=1e9)


def test_a_zombie_is_not_a_live_worker():
    p = subprocess.Popen(["true"])
    for _ in range(100):  # exited but not reaped: /proc still lists it, state Z
        if liveness.start_time(p.pid) is None:
            break
        time.sleep(0.05)
    try:
        assert Path(f"/proc/{p.pid}/stat").exists()
        assert is_stale(running({**identity(), "pid": p.pid}, beat_age=0), GRACE, now=1e9)
    finally:
        p.wait()


def test_only_live_running_trials_of_another_sweep_process_are_others(dead_pid, live_child):
    """Another sweep process shares the study: the sweep then holds no more of its last
    trials than its slots (impl._next_job), so that the other one is not kept waiting."""
    now = time.time()
    mine = running(identity(), beat_age=0, now=now)
    assert not others_running([mine], GRACE)
    assert others_running([mine, running(identity(live_child.pid), beat_age=0, now=now)], GRACE)
    elsewhere = {**identity(dead_pid), "host": "elsewhere"}
    assert others_running([running(elsewhere, beat_age=0, now=now)], GRACE)
    assert not others_running([running(elsewhere, beat_age=GRACE + 1, now=now)], GRACE)
    assert not others_running([running(identity(dead_pid), beat_age=0, now=now)], GRACE)
    finished = running(identity(live_child.pid), beat_age=0, now=now)
    finished.state = TrialState.COMPLETE
    assert not others_running([finished], GRACE)


def test_only_running_trials_can_be_stale(dead_pid):
    for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.WAITING):
        t = running(identity(dead_pid), beat_age=10 * GRACE)
        t.state = state
        assert not is_stale(t, GRACE, now=1e9)


# ---- fail_uncounted when another worker got there first ----------------------------------
@pytest.fixture(params=["memory", "sqlite", "journal"])
def study(request, tmp_path):
    url = {"memory": None, "sqlite": f"sqlite:///{tmp_path}/s.db",
           "journal": f"journal://{tmp_path}/s.log"}[request.param]
    return optuna.create_study(storage=open_storage(url) if url else None)


@pytest.mark.parametrize("finish", ["complete", "fail", "fail_uncounted"])
def test_fail_uncounted_on_a_trial_finished_elsewhere_returns_false(study, finish):
    t = study.ask()
    other = optuna.load_study(study_name=study.study_name, storage=study._storage)  # another worker
    if finish == "complete":
        other.tell(t.number, 1.5)
    elif finish == "fail":
        other.tell(t.number, state=TrialState.FAIL)
    else:
        assert budget.fail_uncounted(other, t._trial_id, "interrupted: its worker died")
    assert budget.fail_uncounted(study, t._trial_id, "over budget") is False
    frozen = study._storage.get_trial(t._trial_id)
    assert frozen.state == (TrialState.COMPLETE if finish == "complete" else TrialState.FAIL)
    if finish != "fail_uncounted":  # the loser stamped nothing on it
        assert "fail_reason" not in frozen.user_attrs and budget.NOT_COUNTED not in frozen.user_attrs
    else:
        assert frozen.user_attrs["fail_reason"] == "interrupted: its worker died"


@pytest.mark.parametrize("write", ["set_trial_user_attr", "set_trial_state_values"])
def test_fail_uncounted_when_the_trial_finishes_between_its_writes(study, write):
    """The other worker finishes the trial after the check, just before one of the writes."""
    t = study.ask()
    storage = study._storage
    real_write, real_finish = getattr(storage, write), storage.set_trial_state_values

    def finish_first(*args, **kwargs):
        if storage.get_trial(t._trial_id).state == TrialState.RUNNING:
            real_finish(t._trial_id, TrialState.COMPLETE, [2.0])
        return real_write(*args, **kwargs)

    setattr(storage, write, finish_first)
    try:
        assert budget.fail_uncounted(study, t._trial_id, "over budget") is False
    finally:
        delattr(storage, write)
    assert storage.get_trial(t._trial_id).state == TrialState.COMPLETE
    assert budget.fail_uncounted(study, t._trial_id, "over budget") is False


def test_fail_uncounted_marks_a_running_trial_once(study):
    t = study.ask()
    assert budget.fail_uncounted(study, t._trial_id, "interrupted: its worker died")
    frozen = study._storage.get_trial(t._trial_id)
    assert frozen.state == TrialState.FAIL and frozen.user_attrs[budget.NOT_COUNTED]
    assert not budget.counts(frozen)
    assert budget.fail_uncounted(study, t._trial_id, "again") is False
