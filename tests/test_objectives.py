"""Multi-objective sweeps (+sweep=pareto) and sweep dirs that move: real commands, tiny data."""
import shutil

import optuna
import pandas as pd
import pytest
import yaml

from conftest import run_cli

pytestmark = pytest.mark.slow
TINY = ["trainer.steps=200", "trainer.eval_interval=100", "hydra.sweeper.n_trials=4"]


def test_pareto_preset_records_both_objectives_and_the_front(tmp_path, names_file):
    r = run_cli("charmlp-train", "-m", "+sweep=pareto", f"data.path={names_file}", *TINY,
                f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(study_name="pareto", storage=f"sqlite:///{tmp_path}/study.db")
    assert len(study.directions) == 2
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    df = pd.read_csv(tmp_path / "results.csv")
    for t in study.trials:
        row = df[df.number == t.number].iloc[0]
        assert row.values_0 == pytest.approx(t.values[0]) and row.values_1 == t.values[1]
        assert row.values_1 == row.num_params  # the second objective is the model's size
    front = {t.number for t in study.best_trials}
    assert set(df.loc[df.pareto.astype(bool), "number"]) == front
    solutions = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())["solutions"]
    assert sorted(tuple(s["values"]) for s in solutions) == sorted(tuple(t.values) for t in study.best_trials)


def test_a_moved_sweep_dir_reads_and_reruns_its_best_trial_exactly(tmp_path, names_file):
    old = tmp_path / "cluster" / "sweep"
    r = run_cli("charmlp-train", "-m", "+sweep=smoke", f"data.path={names_file}", *TINY,
                f"hydra.sweep.dir={old}")
    assert r.returncode == 0, r.stderr[-3000:]
    before = pd.read_csv(old / "results.csv")
    new = tmp_path / "laptop" / "sweep"
    shutil.move(str(old.parent), str(new.parent))
    r = run_cli("charmlp-results", str(new))
    assert r.returncode == 0, r.stderr
    after = pd.read_csv(new / "results.csv")
    pd.testing.assert_frame_equal(before[["number", "state", "value", "output_dir"]],
                                  after[["number", "state", "value", "output_dir"]])
    r = run_cli("charmlp-rerun", str(new), "--best", "--out", str(tmp_path / "rerun"))
    assert r.returncode == 0, r.stderr[-3000:]
    best = after.loc[after.value.idxmin()]
    rerun = yaml.safe_load((tmp_path / "rerun" / "metrics.json").read_text())
    assert rerun["dev_loss"] == best.value  # exactly: same config, engine, seed and data
