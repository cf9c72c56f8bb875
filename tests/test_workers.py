"""Many workers on one study: two sweep processes share a PostgreSQL or journal-file study and
together finish exactly its budget; workers started at the same moment on a new database all
get through; a sweep through submitit's launcher keeps its trial dirs."""
import json
import multiprocessing
import os
import subprocess
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from optuna.trial import TrialState

from charmlp.sweep.storage import open_storage
from charmlp.train import CONF_DIR
from conftest import run_cli

pytestmark = pytest.mark.slow
POSTGRES = os.environ.get("CHARMLP_TEST_POSTGRES", "postgresql://postgres:charmlp@127.0.0.1:5432/charmlp")
FAST = ["trainer.steps=100", "trainer.eval_interval=50", "trainer.history_interval=50"]


# Trials of ~1 s (torch engine) so that both workers, started together, get some of them.
WORKER_TRIAL = ["trainer.steps=400", "trainer.eval_interval=200", "trainer.engine=torch"]


def worker_cmd(names_file, sweep_dir, storage, study, seed, n_trials, trial=tuple(WORKER_TRIAL)):
    return ["charmlp-train", "-m", "+sweep=smoke", f"data.path={names_file}", *trial,
            f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.storage={storage}",
            f"hydra.sweeper.study_name={study}", f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.n_jobs=1", "hydra/launcher=basic", f"hydra.sweeper.sampler.seed={seed}"]


def run_workers(cmds, timeout=300):
    """Start all commands at once and wait for every one; each must exit 0."""
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    errs = [p.communicate(timeout=timeout)[1] for p in procs]
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
        barrier.wait(timeout=30)  # all workers leave this line together
        study = optuna.create_study(study_name="together", storage=open_storage(url),
                                    load_if_exists=True)
        trial = study.ask()
        study.tell(trial, trial.number)
    except BaseException as e:  # noqa: BLE001 -- the parent reports it
        errors.put(f"{type(e).__name__}: {e}".splitlines()[0])
        raise SystemExit(1)


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
            p.join(timeout=60)
        failures = [errors.get() for _ in range(errors.qsize())]
        assert [p.exitcode for p in procs] == [0] * 4, failures
        trials = optuna.load_study(study_name="together", storage=open_storage(url)).trials
        assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # one study, not four
        assert all(t.state == TrialState.COMPLETE for t in trials)


def test_four_sweep_workers_started_together_on_a_new_database(new_database, tmp_path, names_file):
    """The README's N-machine recipe as users run it: charmlp-train workers started at once."""
    url = new_database()
    run_workers([worker_cmd(names_file, tmp_path, url, "together", seed, n_trials=4, trial=FAST)
                 for seed in range(4)])
    ts = optuna.load_study(study_name="together", storage=open_storage(url)).trials
    done = [t for t in ts if t.state == TrialState.COMPLETE]
    assert len(done) == 4 and len({t.number for t in ts}) == len(ts)
    assert all(t.state == TrialState.COMPLETE or t.user_attrs.get("not_counted") for t in ts)


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


def test_two_workers_share_one_journal_file(tmp_path, names_file):
    storage = f"journal://{tmp_path / 'db' / 'study.log'}"  # journal:///abs/path
    run_workers([worker_cmd(names_file, tmp_path, storage, "shared", seed, n_trials=4)
                 for seed in (1, 2)])
    check_shared_study(storage, "shared", tmp_path, n_trials=4)


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
        assert t.user_attrs["output_dir"] == str(out)
        assert json.loads((out / "metrics.json").read_text())["dev_loss"] == t.value
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
