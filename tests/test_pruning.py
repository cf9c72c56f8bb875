"""How a sweep spends compute: pruning inside Hydra sweeps (every launcher and storage), slots
that never wait for a batch, a wall-clock budget, a resume that explores, and a trial whose
own worker dies. Each runs the real command in a subprocess on tiny data."""
import json
import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from conftest import run_cli

pytestmark = pytest.mark.slow
STEPS = ["trainer.steps=600", "trainer.eval_interval=100", "trainer.history_interval=100"]
# Successive halving with reduction factor 2: at each rung a trial goes on only if it is in the
# better half of those that reached it. lr 1e-6 barely moves from its initial loss, so once a
# learning trial has passed rung 100, every such trial is pruned there.
PRUNE = ["hydra/sweeper/pruner=successive_halving", "hydra.sweeper.pruner.min_resource=100",
         "hydra.sweeper.pruner.reduction_factor=2", "hydra/sweeper/sampler=grid",
         "optimizer.lr=choice(0.5,0.000001)", "model.n_embd=choice(4,5,6)", "model.n_hidden=16"]


def sweep(names_file, sweep_dir, *extra, n_trials=6, steps=STEPS, timeout=300):
    return run_cli("charmlp-train", "-m", "+sweep=smoke", f"data.path={names_file}", *steps,
                   f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={n_trials}", *extra,
                   timeout=timeout)


def study_of(sweep_dir, storage=None, name="smoke") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage or f"sqlite:///{sweep_dir}/study.db")


@pytest.mark.parametrize("launcher,storage", [("parallel", "sqlite"), ("basic", "journal"),
                                              ("basic", "sqlite"), ("parallel", "journal")])
def test_pruned_trials_stop_early_and_keep_what_they_did(tmp_path, names_file, launcher, storage):
    url = f"journal:///{tmp_path}/study.log" if storage == "journal" else None
    extra = [f"hydra/launcher={launcher}"] + ([f"hydra.sweeper.storage={url}"] if url else [])
    r = sweep(names_file, tmp_path, *PRUNE, *extra)
    assert r.returncode == 0, r.stderr
    study = study_of(tmp_path, storage=url and optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(f"{tmp_path}/study.log")))
    ts = study.trials
    pruned = [t for t in ts if t.state == TrialState.PRUNED]
    assert pruned, [(t.number, t.state.name, t.params) for t in ts]
    assert len([t for t in ts if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 6
    df = pd.read_csv(tmp_path / "results.csv")
    for t in pruned:
        assert t.intermediate_values and max(t.intermediate_values) < 600
        assert t.value == t.intermediate_values[max(t.intermediate_values)]
        run = tmp_path / f"trial_{t.number:04d}"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "pruned" and metrics["steps_done"] == max(t.intermediate_values)
        assert metrics["dev_loss"] == pytest.approx(t.value)
        assert (run / "model.pt").is_file()
        history = pd.read_csv(run / "history.csv")
        assert history.step.max() == metrics["steps_done"]
        assert df.loc[df.number == t.number, "state"].item() == "PRUNED"
    for t in ts:  # every trial reported each evaluation to its own Optuna trial
        if t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == list(range(100, 601, 100))


def test_the_issue_command_prunes_and_finishes_exactly_n_trials(tmp_path, names_file):
    r = sweep(names_file, tmp_path, "hydra/sweeper/pruner=successive_halving",
              n_trials=10, steps=["trainer.steps=3000", "trainer.eval_interval=300"])
    assert r.returncode == 0, r.stderr
    ts = study_of(tmp_path).trials
    finished = [t for t in ts if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 10 and len(ts) == 10
    pruned = [t for t in ts if t.state == TrialState.PRUNED]
    assert pruned and all(t.intermediate_values for t in pruned)
    df = pd.read_csv(tmp_path / "results.csv")
    assert sorted(df.loc[df.state == "PRUNED", "number"]) == sorted(t.number for t in pruned)
    # One progress line per finished trial, naming it, and the closing summary.
    out = r.stdout + r.stderr  # Hydra logs to stdout
    for t in ts:
        assert f"trial {t.number} {t.state.name}" in out
    assert "% training" in out and "results.csv" in out


def test_a_free_slot_takes_the_next_trial_while_a_long_one_runs(tmp_path, names_file):
    """One long trial and several short ones on 2 slots: the short ones follow each other on
    one slot while the long one runs on the other (in batches they would wait for it)."""
    # The reference engine, so that a long trial stays long however fast the native engine
    # gets. GridSampler shuffles its grid with the seed (numpy's frozen RandomState): seed 33
    # orders this grid long, short, short, short, so the test does not hang on which trial
    # happens to come last (with three long trials in six, a slow machine's last short trial
    # started 0.3 s before the long one ended).
    r = sweep(names_file, tmp_path, "hydra/sweeper/sampler=grid", "model.n_hidden=16",
              "trainer.steps=choice(12000,200)", "model.n_embd=choice(4,5,6,7)",
              "hydra.sweeper.sampler.seed=33", "trainer.engine=reference", n_trials=4,
              steps=["trainer.eval_interval=200", "trainer.history_interval=200"])
    assert r.returncode == 0, r.stderr
    ts = study_of(tmp_path).trials
    spans = {t.number: (t.datetime_start.timestamp(), t.datetime_complete.timestamp(),
                        t.params["trainer.steps"]) for t in ts}
    assert [spans[n][2] for n in sorted(spans)] == [12000, 200, 200, 200], spans
    longs = [(s, e) for s, e, steps in spans.values() if steps == 12000]
    during = [n for n, (s, e, steps) in spans.items()
              if steps == 200 and any(ls + 0.5 < s and s < le - 0.5 for ls, le in longs)]
    assert len(during) >= 2, spans
    # duration_s is each trial's own time, not its batch's: long ones take longer than short
    # ones (medians: a slot's first trial also pays for starting its worker process).
    df = pd.read_csv(tmp_path / "results.csv").set_index("number")
    long_s = sorted(df.duration_s[n] for n, (_, _, steps) in spans.items() if steps == 12000)
    short_s = sorted(df.duration_s[n] for n, (_, _, steps) in spans.items() if steps == 200)
    assert long_s[len(long_s) // 2] > short_s[len(short_s) // 2], df.duration_s


def test_timeout_min_stops_asking_and_lets_running_trials_finish(tmp_path, names_file):
    r = sweep(names_file, tmp_path, "hydra.sweeper.timeout_min=0.05", n_trials=200,
              steps=["trainer.steps=3000", "trainer.eval_interval=1000"])
    assert r.returncode == 0, r.stderr
    ts = study_of(tmp_path).trials
    assert 1 <= len(ts) < 200 and all(t.state == TrialState.COMPLETE for t in ts)
    assert "timeout_min=0.05 reached" in r.stdout + r.stderr


def test_a_resumed_sweep_explores_new_points(tmp_path, names_file):
    """Stopped inside TPE's random start-up phase and resumed: the sampler's stream goes on
    instead of replaying the first points, and the same command reproduces the same study."""
    params = []
    for where in ("a", "b"):
        d = tmp_path / where
        for n in (2, 4, 6):
            r = sweep(names_file, d, n_trials=n, steps=["trainer.steps=100", "trainer.eval_interval=100"])
            assert r.returncode == 0, r.stderr
        params.append([tuple(sorted(t.params.items())) for t in study_of(d).trials])
    first = params[0]
    assert len(first) == 6 and len(set(first)) == 6, first
    assert params[0] == params[1]  # reproducible: same seed, same stops, same points


def test_a_resumed_grid_runs_the_points_it_has_not_run(tmp_path, names_file):
    """A grid stopped after 2 of its 6 points and resumed twice: every point exactly once (its
    seed, which maps trial numbers to points, is kept: another would repeat points)."""
    grid = ["hydra/sweeper/sampler=grid", "model.n_embd=choice(4,5,6)", "model.n_hidden=choice(8,16)"]
    for n in (2, 4, 6):
        r = sweep(names_file, tmp_path, *grid, n_trials=n,
                  steps=["trainer.steps=100", "trainer.eval_interval=100"])
        assert r.returncode == 0, r.stderr
    points = [tuple(sorted(t.params.items())) for t in study_of(tmp_path).trials]
    assert len(points) == 6 and len(set(points)) == 6, points


def _loky_worker_holding(driver: int, trial_dir: str) -> int | None:
    """The pid of the driver's descendant that has trial_dir/train.log open."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    todo, found = [driver], []
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found.append(child)
            todo.append(child)
    for pid in found:
        try:
            if any(os.readlink(fd).startswith(trial_dir) for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
        except OSError:
            continue
    return None


def test_a_trial_that_kills_its_worker_is_retried_once_then_fails(tmp_path, names_file):
    """SIGKILL the worker of trials 0 and 1 (1 is 0's retry), as an OOM killer would: each
    time only that slot restarts, the trial beside it finishes, the retry bound holds, and
    the sweep ends normally."""
    import subprocess
    cmd = ["charmlp-train", "-m", "+sweep=smoke", f"data.path={names_file}", "model.n_embd=8",
           "trainer.steps=100000", "trainer.eval_interval=50000", f"hydra.sweep.dir={tmp_path}",
           "hydra.sweeper.n_trials=3", "hydra.sweeper.max_failure_rate=1"]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = []

    def killer():
        for number in (0, 2):  # trial 2 is trial 0's retry: 1 runs beside 0 on the other slot
            target = str(tmp_path / f"trial_{number:04d}")
            deadline = time.time() + 120
            while time.time() < deadline:
                pid = _loky_worker_holding(driver.pid, target)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(number)
                    break
                time.sleep(0.05)
    thread = threading.Thread(target=killer)
    thread.start()
    out, err = driver.communicate(timeout=300)
    thread.join()
    assert driver.returncode == 0, err
    assert "Traceback" not in err, err
    assert killed == [0, 2]
    ts = {t.number: t for t in study_of(tmp_path).trials}
    assert ts[0].state == TrialState.FAIL and ts[0].user_attrs.get("not_counted")
    assert ts[1].state == TrialState.COMPLETE  # the healthy trial beside it was not lost
    assert ts[2].user_attrs["retry_of"] == 0 and ts[2].params == ts[0].params
    assert ts[2].state == TrialState.FAIL and not ts[2].user_attrs.get("not_counted")
    assert "max_retries=1" in ts[2].user_attrs["fail_reason"]
    assert ts[3].state == TrialState.COMPLETE and len(ts) == 4


@pytest.mark.parametrize("choice, cls, takes_min_resource", [
    ("none", optuna.pruners.NopPruner, False),
    ("median", optuna.pruners.MedianPruner, False),
    ("successive_halving", optuna.pruners.SuccessiveHalvingPruner, True),
    ("hyperband", optuna.pruners.HyperbandPruner, True),
])
def test_a_presets_pruner_can_be_swapped_on_the_command_line(choice, cls, takes_min_resource, caplog):
    """+sweep=wide sets successive halving's min_resource; `hydra/sweeper/pruner=none` (the
    README's no-pruning comparison) must still run: arguments the chosen pruner does not take
    are dropped with a warning naming them, the ones it takes are kept."""
    from hydra import compose, initialize_config_dir

    from charmlp.configs import conf_dir
    from charmlp.sweep.pruners import make_pruner
    with initialize_config_dir(conf_dir(), version_base=None):
        cfg = compose("train", ["+sweep=wide", f"hydra/sweeper/pruner={choice}"], return_hydra_config=True)
    pruner = make_pruner(cfg.hydra.sweeper.pruner)
    assert type(pruner) is cls
    if takes_min_resource:
        assert pruner._min_resource == cfg.hydra.sweeper.pruner.min_resource > 1
    assert ("takes no min_resource" in caplog.text) != takes_min_resource, caplog.text


@pytest.mark.parametrize("preset", ["embed_hidden", "wide", "pareto"])
@pytest.mark.parametrize("choice, cls", [("random", optuna.samplers.RandomSampler),
                                         ("qmc", optuna.samplers.QMCSampler), (None, optuna.samplers.TPESampler)])
def test_a_presets_sampler_can_be_swapped_on_the_command_line(preset, choice, cls):
    """The presets' TPE settings (start-up trials, constant liar) live in a sampler choice of
    their own: another sampler replaces them whole (it failed on their keys before) and keeps
    the preset's seed; without one, the preset's TPE is as configured."""
    from hydra import compose, initialize_config_dir

    from charmlp.configs import conf_dir
    from charmlp.sweep.sweeper import _sampler
    with initialize_config_dir(conf_dir(), version_base=None):
        cfg = compose("train", [f"+sweep={preset}"] + ([f"hydra/sweeper/sampler={choice}"] if choice else []),
                      return_hydra_config=True)
    sampler = _sampler(cfg.hydra.sweeper.sampler)
    assert type(sampler) is cls and cfg.hydra.sweeper.sampler.seed == 0
    if choice is None:
        expected = {"embed_hidden": 6, "wide": 10, "pareto": 8}[preset]
        assert sampler._n_startup_trials == expected and sampler._constant_liar
        assert sampler._multivariate == (preset == "wide")


def test_a_pruner_without_the_presets_arguments_runs_every_trial(tmp_path, names_file):
    """End to end, as the wide preset's no-pruning comparison runs: the trials (which build the
    pruner again in their own processes) complete, and the sweep warns once."""
    r = sweep(names_file, tmp_path, "hydra/sweeper/pruner=none", "+hydra.sweeper.pruner.min_resource=100",
              n_trials=2)
    assert r.returncode == 0, r.stderr
    assert [t.state for t in study_of(tmp_path).trials] == [TrialState.COMPLETE] * 2
    assert (r.stdout + r.stderr).count("takes no min_resource") == 1


def test_a_job_whose_trial_the_study_already_finished_stops_in_one_line(tmp_path, names_file):
    """A Slurm job outliving its stopped sweep reports to a trial the resume has already
    failed and queued again: it stops there (status 'abandoned', what it did kept), instead of
    training on and ending in UpdateFinishedTrialError's traceback."""
    from charmlp.errors import RunStopped
    from charmlp.sweep.reporting import TrialAbandoned, TrialReporter
    from charmlp.trainer import train
    from hydra import compose, initialize_config_dir
    from charmlp.train import CONF_DIR
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=url)
    t = study.ask()
    study.tell(t, state=TrialState.FAIL)
    reporter = TrialReporter(url, "s", t.number, None)
    with initialize_config_dir(config_dir=CONF_DIR):
        cfg = compose("train", [f"data.path={names_file}", *STEPS])
    with pytest.raises(TrialAbandoned, match="already finished in the study") as e:
        train(cfg, tmp_path / "run", on_eval=reporter.report)
    assert isinstance(e.value, RunStopped) and "at step 100" in str(e.value)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "abandoned" and metrics["steps_done"] == 100
