"""charmlp-results on sweep dirs built with Optuna directly (tests/fake_sweeps.py): the
figures each kind of search gets, PRUNED and multi-objective rows, moved sweep dirs, and the
terminal table."""
import json
import shutil

import pandas as pd
import pytest
import yaml

from charmlp import results
from charmlp.results.cli import main
from fake_sweeps import make_sweep

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """One sweep dir per kind, built once (tests copy them before writing into them)."""
    root = tmp_path_factory.mktemp("fake")
    return {kind: make_sweep(root, kind) for kind in ("tpe", "grid", "pruned", "pareto")}


def plotted(sweep_dir, tmp_path, capsys) -> tuple[set, str]:
    out = tmp_path / "out"
    assert main([str(sweep_dir), "--plot", "--out", str(out)]) == 0
    pngs = {p.stem for p in out.glob("*.png") if p.read_bytes().startswith(PNG) and p.stat().st_size > 5000}
    return pngs, capsys.readouterr().out


@pytest.mark.parametrize("kind, figures", [
    ("tpe", {"history", "curves", "importances", "slice", "contour"}),
    ("grid", {"history", "curves", "importances", "slice", "heatmap"}),
    ("pruned", {"history", "curves", "importances", "slice", "contour"}),
    ("pareto", {"history", "curves", "importances", "slice", "contour", "pareto"}),
])
def test_each_search_gets_its_figures(sweeps, tmp_path, capsys, kind, figures):
    pngs, out = plotted(sweeps[kind], tmp_path, capsys)
    assert pngs == figures  # the heatmap only for the grid, the front only for two objectives
    assert "skipped" not in out
    assert ("min dev loss, n_embd (rows) x n_hidden (columns):" in out) == (kind == "grid")


def test_grid_detection(sweeps):
    assert results.collect(str(sweeps["grid"])).attrs["grid"]
    assert not results.collect(str(sweeps["tpe"])).attrs["grid"]


def test_figures_a_sweep_cannot_support_are_skipped_with_the_reason(sweeps, tmp_path):
    sweep = results.open_sweep(str(sweeps["pruned"]))
    one = sweep.df[sweep.df["number"] == 0]  # one COMPLETE trial: no importances, no contour
    written, skipped = results.plot(one, tmp_path, None)
    assert set(written) == {"history", "curves"} and skipped == {}
    import optuna
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(params={"x": 1.0}, value=2.0,
                    distributions={"x": optuna.distributions.FloatDistribution(0, 2)}))
    written, skipped = results.plot(one, tmp_path, study)
    assert {"importances", "slice", "contour"} <= set(skipped)
    assert "two COMPLETE trials" in skipped["importances"]


def test_history_focuses_on_the_useful_range(sweeps, tmp_path):
    """The TPE sweep has two outliers 0.13 above the rest: they sit at the edge, not in range."""
    from charmlp.results.plots import history_figure
    df = results.collect(str(sweeps["tpe"]))
    fig = history_figure(df)
    lo, hi = fig.axes[0].get_ylim()
    values = df["value"].sort_values()
    assert lo < values.iloc[0] and hi < values.iloc[-2]  # the two outliers are above the range
    assert hi > values.iloc[-3]  # everything else is inside
    assert any("2 outside the range" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_pruned_rows(sweeps):
    df = results.collect(str(sweeps["pruned"])).set_index("number")
    pruned = df[df["state"] == "PRUNED"]
    assert len(pruned) == 4 and (pruned["steps_done"] == 300).all()
    assert pruned["dev_loss"].notna().all()  # the last reported dev loss
    assert list(df["state"].value_counts().sort_index().items()) == [
        ("COMPLETE", 8), ("FAIL", 4), ("PRUNED", 4)]
    assert results.leaderboard(df.reset_index())["state"].eq("COMPLETE").all()


def test_multi_objective_columns_and_front(sweeps, tmp_path):
    import optuna
    df = results.collect(str(sweeps["pareto"]))
    assert "value" not in df.columns and {"values_0", "values_1", "pareto"} <= set(df.columns)
    study = optuna.load_study(study_name="pareto", storage=f"sqlite:///{sweeps['pareto'] / 'study.db'}")
    assert set(df[df["pareto"]]["number"]) == {t.number for t in study.best_trials}
    board = results.leaderboard(df)
    assert board["pareto"].iloc[0] and board["values_0"].iloc[0] == df[df["pareto"]]["values_0"].min()
    paths = results.write_outputs(df, tmp_path)
    back = pd.read_csv(paths["results"])
    assert back["pareto"].dtype == bool and list(back["values_1"]) == list(df["values_1"])


def test_a_moved_sweep_dir_gives_its_table(sweeps, tmp_path):
    """study.json's storage and the output_dir attrs are relative to the sweep dir."""
    moved = shutil.copytree(sweeps["tpe"], tmp_path / "elsewhere" / "tpe")
    assert json.loads((moved / "study.json").read_text())["storage"] == "sqlite:///study.db"
    df = results.collect(str(moved))
    assert len(df) == 16 and df["dev_loss"].notna().all()
    assert list(df["output_dir"]) == [f"trial_{n:04d}" for n in range(16)]
    results.write_outputs(df, moved)
    best = yaml.safe_load((moved / "best.yaml").read_text())
    assert best["output_dir"].startswith("trial_") and best["config"]["optimized_metric"] == "dev_loss"


def test_an_old_sweep_with_absolute_paths_still_reads_after_a_move(sweeps, tmp_path):
    """Older sweeps stored absolute paths: those still work, and after a move the same names
    are looked for in the sweep dir."""
    old = make_sweep(tmp_path, "grid", absolute=True)
    assert json.loads((old / "study.json").read_text())["storage"] == f"sqlite:///{old / 'study.db'}"
    assert results.collect(str(old))["dev_loss"].notna().all()
    moved = shutil.move(old, tmp_path / "new")
    df = results.collect(str(moved))
    assert df["dev_loss"].notna().all() and df["output_dir"][0] == "trial_0000"


def test_terminal_table_fits_120_columns(sweeps, tmp_path, capsys):
    wide = shutil.copytree(sweeps["pruned"], tmp_path / "pruned")
    assert main([str(wide)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(next(ln for ln in lines if ln.startswith("16 trials"))) + 1:]
    assert table and max(map(len, table)) <= 120
    assert table[0].split()[:5] == ["number", "value", "n_embd", "n_hidden", "lr"]
    number, *_, run = table[1].split()
    assert run == f"trial_{int(number):04d}"  # relative dirs


def test_not_measured_instead_of_nan():
    from charmlp.results.tables import terminal_table
    df = results.to_frame([{"number": 0, "state": "COMPLETE", "value": 2.1, "params_model.n_embd": 8,
                            "dev_loss": 2.1, "train_loss": None, "output_dir": "trial_0000"}])
    text = terminal_table(df, results.leaderboard(df), "text")
    assert "not measured" in text and "nan" not in text.lower()
