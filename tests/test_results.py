"""charmlp.results on fixtures built here (no training): fake run dirs as charmlp-train and
Hydra write them, and a real Optuna study in SQLite laid out as the charmlp sweeper does."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from charmlp import atomic, results
from charmlp.errors import CharmlpError

# (n_embd, n_hidden, dev_loss) for the completed runs of the multirun fixture; job 4 repeats
# cell (8, 100) with a worse loss, so the pivot must take the min.
GRID = [(8, 100, 2.40), (8, 200, 2.30), (16, 100, 2.20), (16, 200, 2.10), (8, 100, 2.50)]


def write_run(run_dir: Path, overrides: list[str], metrics: dict | str | None,
              job_num: int | str = "???", config_extra: dict | None = None) -> Path:
    """A run dir as charmlp-train leaves it; metrics=None: crashed before writing metrics,
    a str: written verbatim (e.g. truncated JSON)."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True)
    config = {"model": {"n_embd": 10, "n_hidden": 200}, "trainer": {"steps": 200},
              "optimized_metric": "dev_loss", **(config_extra or {})}
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": job_num}}}))
    if isinstance(metrics, dict):
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    elif isinstance(metrics, str):
        (run_dir / "metrics.json").write_text(metrics)
    return run_dir


def completed(dev: float, **extra) -> dict:
    return {"status": "completed", "train_loss": dev - 0.1, "dev_loss": dev, "init_loss": 3.3,
            "uniform_loss": 3.29, "num_params": 11897, "steps": 200, "batch_size": 32,
            "wall_time": 1.5, "steps_per_sec": 133.3, "best_dev_loss": dev, "best_dev_step": 200,
            "engine": "torch", "device": "cpu", "threads": 1, **extra}


@pytest.fixture
def multirun(tmp_path) -> Path:
    """A basic-sweeper dir (a full 3 x 2 grid): 5 completed jobs, 1 diverged, 1 truncated
    metrics.json, 1 none."""
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    for num, (e, h, dev) in enumerate(GRID):
        write_run(sweep / str(num), [f"model.n_embd={e}", f"model.n_hidden={h}", "optimizer.lr=0.1"],
                  completed(dev), job_num=num)
    write_run(sweep / "5", ["model.n_embd=32", "model.n_hidden=100"],
              {"status": "diverged", "reason": "loss nan at step 7", "num_params": 5},
              job_num=5)
    write_run(sweep / "6", ["model.n_embd=32", "model.n_hidden=200"],
              json.dumps(completed(1.0))[:40], job_num=6)
    write_run(sweep / "7", ["model.n_embd=16", "model.n_hidden=100"], None, job_num=7)
    # A config inside .hydra is not a run: the search must not descend there.
    (sweep / "0" / ".hydra" / "nested" / ".hydra").mkdir(parents=True)
    (sweep / "0" / ".hydra" / "nested" / ".hydra" / "config.yaml").write_text("a: 1\n")
    return sweep


SPACE = {"model.n_embd": CategoricalDistribution([8, 16]),
         "model.n_hidden": IntDistribution(50, 300),
         "optimizer.lr": FloatDistribution(0.01, 0.5, log=True)}


@pytest.fixture(scope="module")
def optuna_sweep(tmp_path_factory) -> Path:
    """An Optuna sweep dir as charmlp's sweeper writes it: study.json, trial_NNNN dirs, and
    trials with output_dir/overrides/metric user attrs: 4 complete, 1 failed, 1 running.
    Built once per module (SQLite schema creation is slow): tests must not modify it."""
    sweep = tmp_path_factory.mktemp("optuna") / "osweep"
    sweep.mkdir()
    url = f"sqlite:///{sweep / 'study.db'}"
    study = optuna.create_study(study_name="names_mlp", storage=url,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    (sweep / "study.json").write_text(json.dumps({"storage": url, "study_name": "names_mlp"}))
    for i, dev in enumerate([2.3, 2.1, None, 2.2, 2.25, "running"]):
        t = study.ask(SPACE)
        out = sweep / f"trial_{t.number:04d}"
        overrides = [f"{k}={v}" for k, v in t.params.items()] + ["trainer.steps=200"]
        t.set_user_attr("trainer.steps", 200)  # a fixed param, as the official plugin records
        if dev == "running":  # the sweeper sets attrs only once a trial is recorded
            write_run(out, overrides, None, job_num=t.number)
            continue
        t.set_user_attr("output_dir", str(out))
        t.set_user_attr("overrides", overrides)
        if dev is None:
            write_run(out, overrides, '{"status": "runn', job_num=t.number)
            t.set_user_attr("fail_reason", "CharmlpError: loss diverged")
            study.tell(t, state=optuna.trial.TrialState.FAIL)
            continue
        metrics = completed(dev, test_loss=dev + 0.05) if i == 4 else completed(dev)
        write_run(out, overrides, metrics, job_num=t.number)
        # Trial 3 lacks dev_loss in its attrs: results must fill it from metrics.json.
        for key in ("train_loss", "dev_loss", "num_params", "steps", "steps_per_sec", "wall_time"):
            if not (i == 3 and key == "dev_loss"):
                t.set_user_attr(key, metrics[key])
        study.tell(t, dev)
    return sweep


# ---- collect ----------------------------------------------------------------------------------
def test_multirun_rows_states_params(multirun):
    df = results.collect(str(multirun))
    assert list(df["number"]) == list(range(8))
    assert list(df["state"]) == ["COMPLETE"] * 5 + ["FAIL"] * 3
    assert list(df["value"][:5]) == [dev for _, _, dev in GRID]
    assert df["value"][5:].isna().all()
    assert list(df["params_model.n_embd"]) == [8, 8, 16, 16, 8, 32, 32, 16]
    assert df["params_optimizer.lr"][0] == 0.1
    reasons = df["fail_reason"]
    assert "loss nan at step 7" in reasons[5]
    assert "unreadable" in reasons[6] and "no metrics.json" in reasons[7]
    assert reasons[:5].isna().all()
    assert df["overrides"][0] == "model.n_embd=8 model.n_hidden=100 optimizer.lr=0.1"
    assert df["output_dir"][3] == "3"  # relative to the dir it was read from
    assert df.attrs["root"] == str(multirun.resolve()) and df.attrs["grid"]


def test_columns_in_documented_order(multirun):
    df = results.collect(str(multirun))
    assert list(df.columns) == [
        "number", "state", "value", "params_model.n_embd", "params_model.n_hidden",
        "params_optimizer.lr", "train_loss", "dev_loss", "num_params", "steps", "duration_s",
        "steps_per_sec", "datetime_start", "datetime_complete", "output_dir", "overrides",
        "fail_reason"]  # no test_loss: no run reported one


def test_parent_dir_of_many_runs_numbers_by_order(tmp_path, multirun):
    """Single runs (job num '???') and a sweep side by side: numbers are the row order."""
    write_run(tmp_path / "runs" / "2024-01-01_00-00-00", ["model.n_embd=4"], completed(2.6))
    df = results.collect(str(tmp_path))
    assert len(df) == 9 and list(df["number"]) == list(range(9))
    assert df["number"].is_unique


def test_a_run_that_kept_a_default_shows_the_value_it_ran_with(tmp_path, multirun):
    """Beside a sweep over n_embd and n_hidden, a plain run has no override for them: the
    table reads them from its config instead of saying 'not measured'."""
    write_run(tmp_path / "runs" / "plain", [], completed(2.6))
    df = results.collect(str(tmp_path))
    plain = df[df["output_dir"].str.endswith("plain")].iloc[0]
    assert plain["params_model.n_embd"] == 10 and plain["params_model.n_hidden"] == 200
    assert str(df["params_model.n_embd"].dtype) == "Int64"  # still integers beside the sweep's
    assert plain.isna()["params_optimizer.lr"]  # not in its config: still not measured


def test_optimized_metric_from_config(tmp_path):
    write_run(tmp_path / "r", [], completed(2.0), config_extra={"optimized_metric": "train_loss"})
    assert results.collect(str(tmp_path))["value"][0] == pytest.approx(1.9)


def test_optuna_rows_match_study(optuna_sweep):
    df = results.collect(str(optuna_sweep))
    study = optuna.load_study(study_name="names_mlp", storage=f"sqlite:///{optuna_sweep / 'study.db'}")
    trials = study.get_trials()
    assert len(df) == len(trials)
    for t, (_, row) in zip(trials, df.iterrows()):
        assert row["number"] == t.number
        assert row["state"] == t.state.name
        assert (math.isnan(row["value"]) if t.value is None else row["value"] == t.value)
        for key, value in t.params.items():
            assert row[f"params_{key}"] == value
    assert not any(c == "params_trainer.steps" for c in df.columns)  # user attr, not a param
    assert list(df["state"]) == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "RUNNING"]


def test_int_params_stay_int_beside_trials_without_params(tmp_path):
    """A trial that failed before it had params (a bad override) leaves gaps in the params
    columns; integer params must still read 8 in results.csv, not 8.0."""
    rows = [{"number": 0, "state": "COMPLETE", "value": 2.1, "params_model.n_embd": 8,
             "params_optimizer.lr": 0.1, "params_model.batchnorm": True},
            {"number": 1, "state": "FAIL", "value": None}]
    df = results.to_frame(rows)
    assert str(df["params_model.n_embd"].dtype) == "Int64"
    assert df["params_optimizer.lr"].dtype == float
    paths = results.write_outputs(df, tmp_path)
    header, first, second = paths["results"].read_text().splitlines()[:3]
    assert header.startswith("number,state,value,params_model.batchnorm,params_model.n_embd,"
                             "params_optimizer.lr,")
    assert first.startswith("0,COMPLETE,2.1,True,8,0.1,") and second.startswith("1,FAIL,,,,,")


def test_optuna_gaps_filled_from_run_dirs(optuna_sweep):
    df = results.collect(str(optuna_sweep)).set_index("number")
    assert df.loc[3, "dev_loss"] == 2.2  # not in the trial's attrs; read from metrics.json
    assert df.loc[4, "test_loss"] == pytest.approx(2.30)  # only in metrics.json
    assert df.loc[2, "fail_reason"] == "CharmlpError: loss diverged"
    assert df.loc[5, "output_dir"] == "trial_0005"  # by name, no attr yet
    assert "trainer.steps=200" in df.loc[5, "overrides"]
    assert df.loc[0, "duration_s"] >= 0 and pd.isna(df.loc[5, "datetime_complete"])


def test_storage_url_and_study_name(optuna_sweep):
    url = f"sqlite:///{optuna_sweep / 'study.db'}"
    by_url = results.collect(url)  # one study in the storage: no name needed
    by_name = results.collect(url, "names_mlp")
    assert list(by_url["number"]) == list(by_name["number"]) == list(range(6))
    assert by_url["output_dir"][0] == "trial_0000"  # study.json beside study.db: its sweep dir


def test_storage_with_two_studies_needs_a_name(optuna_sweep, tmp_path):
    shutil.copy(optuna_sweep / "study.db", tmp_path / "study.db")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="other", storage=url)
    with pytest.raises(CharmlpError, match="--study"):
        results.collect(url)
    with pytest.raises(CharmlpError, match="no study 'nope'"):
        results.collect(url, "nope")


def test_empty_dir_and_missing_path_raise(tmp_path):
    with pytest.raises(CharmlpError, match="no runs found"):
        results.collect(str(tmp_path))
    with pytest.raises(CharmlpError, match="does not exist"):
        results.collect(str(tmp_path / "nope"))


# ---- views --------------------------------------------------------------------------------------
def test_leaderboard_best_first(multirun):
    board = results.leaderboard(results.collect(str(multirun)), top=3)
    assert list(board["number"]) == [3, 2, 1]
    assert list(board["value"]) == [2.10, 2.20, 2.30]


def test_pivot_min_per_cell(multirun):
    table = results.pivot(results.collect(str(multirun)))
    assert list(table.index) == [8, 16] and list(table.columns) == [100, 200]
    assert table.loc[8, 100] == 2.40  # min of jobs 0 and 4
    assert table.loc[16, 200] == 2.10
    assert 32 not in table.index  # failed trials never enter


def test_pivot_without_those_params_explains(optuna_sweep):
    df = results.collect(str(optuna_sweep)).drop(columns=["params_model.n_hidden"])
    table = results.pivot(df, "params_model.n_embd", "params_model.n_hidden")
    assert table.empty and "params_model.n_hidden" in table.attrs["message"]


def test_best_trial_and_no_complete_error(multirun):
    df = results.collect(str(multirun))
    assert results.best_trial(df)["number"] == 3
    with pytest.raises(CharmlpError, match="no COMPLETE trial.*fix:"):
        results.best_trial(df[df["state"] != "COMPLETE"])


# ---- outputs --------------------------------------------------------------------------------------
def test_results_csv_round_trips(multirun, tmp_path):
    df = results.collect(str(multirun))
    paths = results.write_outputs(df, tmp_path / "out")
    back = pd.read_csv(paths["results"])
    assert list(back.columns) == list(df.columns)
    assert list(back["number"]) == list(df["number"]) and back["number"].dtype.kind == "i"
    assert list(back["state"]) == list(df["state"])
    pd.testing.assert_series_equal(back["value"], df["value"], check_dtype=False)
    assert list(back["params_model.n_hidden"]) == list(df["params_model.n_hidden"])
    assert back["fail_reason"][5] == df["fail_reason"][5]


def test_best_yaml(multirun, tmp_path):
    paths = results.write_outputs(results.collect(str(multirun)), tmp_path)
    best = yaml.safe_load(paths["best"].read_text())
    run = str((multirun / "3").resolve())
    assert best["number"] == 3 and best["value"] == 2.10 and best["dev_loss"] == 2.10
    assert best["train_loss"] == pytest.approx(2.0) and best["output_dir"] == "3"
    assert best["overrides"] == ["model.n_embd=16", "model.n_hidden=200", "optimizer.lr=0.1"]
    assert best["config"]["model"] == {"n_embd": 10, "n_hidden": 200}
    assert best["rerun"] == f"charmlp-rerun {run}"


def test_no_best_yaml_without_complete_trial(multirun, tmp_path):
    df = results.collect(str(multirun))
    paths = results.write_outputs(df[df["state"] == "FAIL"], tmp_path)
    assert set(paths) == {"results"} and not (tmp_path / "best.yaml").exists()


def test_write_is_atomic(multirun, tmp_path, monkeypatch):
    df = results.collect(str(multirun))
    out = tmp_path / "out"
    results.write_outputs(df, out)
    before = (out / "results.csv").read_text()

    def replace_fails(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(atomic.os, "replace", replace_fails)
    with pytest.raises(OSError):
        results.write_outputs(df.head(2), out)
    monkeypatch.undo()

    real_to_csv = pd.DataFrame.to_csv

    def half_then_crash(self, path, **kw):  # a crash in the middle of writing the table
        real_to_csv(self.head(1), path, **kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        results.write_outputs(df.head(2), out)
    assert (out / "results.csv").read_text() == before
    assert sorted(p.name for p in out.iterdir()) == ["best.yaml", "results.csv"]  # no temp files


def test_collect_and_write_survive_live_sweep_dirs(tmp_path):
    """Half-created dirs (a job just started) never make collect/write_outputs raise."""
    sweep = tmp_path / "s"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "0" / ".hydra" / "config.yaml").write_text("model: {n_embd: [")  # mid-write
    write_run(sweep / "1", ["model.n_embd=8"], '{"status": "running"}', job_num=1)
    df = results.collect(str(sweep))
    assert list(df["state"]) == ["FAIL", "RUNNING"]
    results.write_outputs(df, sweep)
    assert pd.read_csv(sweep / "results.csv")["state"].tolist() == ["FAIL", "RUNNING"]


# ---- CLI ------------------------------------------------------------------------------------------
def test_cli_markdown(multirun, capsys):
    assert results.main([str(multirun), "--format", "markdown", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert f"results: {multirun / 'results.csv'}" in out
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in out.splitlines() if ln.startswith("|")]
    # optimizer.lr=0.1 in every run: a fixed override, left out of the leaderboard.
    assert cells[0] == ["number", "value", "n_embd", "n_hidden", "train", "dev", "weights", "steps/s", "dir"]
    assert cells[2][:2] == ["3", "2.1000"] and cells[3][:2] == ["2", "2.2000"]  # header, rule, best, next
    assert cells[2][-1] == "3"  # the trial's dir, relative to the sweep dir
    assert cells[-4] == ["n_embd", "100", "200"]  # a full grid: the pivot, as markdown too
    assert cells[-1] == ["16", "2.2", "2.1"]
    assert (multirun / "results.csv").is_file() and (multirun / "best.yaml").is_file()


@pytest.mark.parametrize("top", ["0", "-1"])
def test_cli_top_below_one_is_one_line(multirun, capsys, top):
    assert results.main([str(multirun), "--top", top]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"charmlp-results: error: --top {top} must be at least 1; fix: pass --top 1 or more\n"
    assert not (multirun / "results.csv").exists()  # refused before writing anything


def test_cli_out_dir_and_storage_url(optuna_sweep, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{optuna_sweep / 'study.db'}"
    assert results.main([url, "--study", "names_mlp"]) == 0  # a URL: writes into the cwd
    assert "results: results.csv" in capsys.readouterr().out.replace(str(tmp_path) + "/", "")
    assert len(pd.read_csv(tmp_path / "results.csv")) == 6


@pytest.mark.parametrize("make_path, what", [
    (lambda tmp: str(tmp / "nope"), "does not exist"),
    (lambda tmp: str(tmp), "no runs found"),
    (lambda tmp: "nosuchdb://user:secret@host/db", "cannot open Optuna storage"),
    (lambda tmp: f"sqlite:///{tmp / 'missing.db'}", "no such file"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, make_path, what):
    assert results.main([make_path(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("charmlp-results: error: ")
    assert what in err and "fix: " in err and "secret" not in err
    assert not (tmp_path / "missing.db").exists()  # looking never creates a storage


def test_cli_garbage_storage_file_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.db").write_text("this is not a database")
    assert results.main([f"sqlite:///{tmp_path / 'bad.db'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot open Optuna storage" in err


def test_cli_unknown_study(optuna_sweep, capsys):
    assert results.main([f"sqlite:///{optuna_sweep / 'study.db'}", "--study", "nope"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err


def test_cli_plot_writes_pngs(multirun, tmp_path, capsys):
    assert results.main([str(multirun), "--plot", "--out", str(tmp_path)]) == 0
    assert "curves: skipped (no top or pruned trial has a dev-loss history" in capsys.readouterr().out
    for name in ("heatmap.png", "history.png"):
        png = (tmp_path / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_plot_without_grid_still_writes(optuna_sweep, tmp_path):
    df = results.collect(str(optuna_sweep)).drop(columns=["params_model.n_embd"])
    paths, skipped = results.plot(df, tmp_path)
    assert set(paths) == {"history"} and "curves" in skipped  # no grid, no study, no history.csv
    assert all(p.stat().st_size > 0 for p in paths.values())


def test_console_script_error(tmp_path):
    """The installed entry point, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "charmlp.results", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(results.__file__).parents[1])})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "charmlp-results: error:" in proc.stderr


def test_a_moved_sweep_dir_finds_its_journal_file_by_name(tmp_path):
    """study.json records a journal storage by its absolute path; the sweep dir moved, the
    file kept in it is found there, like the default study.db."""
    from charmlp.rundir import resolve_storage
    moved_dir = tmp_path / "moved"
    moved_dir.mkdir()
    (moved_dir / "study.log").write_text("")
    old = f"journal:///{tmp_path}/original/study.log"
    assert resolve_storage(old, moved_dir) == f"journal:///{moved_dir}/study.log"
    elsewhere = tmp_path / "shared.log"
    elsewhere.write_text("")
    assert resolve_storage(f"journal:///{elsewhere}", moved_dir) == f"journal:///{elsewhere}"
