"""charmlp-replicate on a tiny real sweep, and its summary rule on fabricated runs."""
import os
import sys

import pandas as pd
import pytest

from charmlp.replicate import summarize
from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, names_file):
    d = tmp_path_factory.mktemp("rep") / "sweep"
    r = run_cli("charmlp-train", "-m", "+sweep=smoke", f"data.path={names_file}", "trainer.steps=200",
                "trainer.eval_interval=100", "trainer.history_interval=50", "hydra.sweeper.n_trials=3",
                f"hydra.sweep.dir={d}")
    assert r.returncode == 0, r.stderr
    return d


def replicate(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    import subprocess
    return subprocess.run([sys.executable, "-m", "charmlp.replicate", *args], capture_output=True,
                          text=True, timeout=600, env=env)


def test_replicates_of_the_top_trials(tiny_sweep):
    r = replicate(str(tiny_sweep), "--top", "2", "--seeds", "2", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    runs = pd.read_csv(tiny_sweep / "replicates.csv")
    board = pd.read_csv(tiny_sweep / "results.csv").sort_values(["value", "number"]).head(2)
    assert sorted(runs["number"].unique()) == sorted(board["number"])
    assert list(runs["seed"]) == [1, 2, 1, 2] and (runs["state"] == "COMPLETE").all()
    for row in runs.itertuples():
        assert row.output_dir == f"replicates/trial_{row.number:04d}/seed_{row.seed}"
        assert (tiny_sweep / row.output_dir / "metrics.json").is_file()
    # Another init seed gives another loss; the sweep's own value is not among the replicates.
    for _, group in runs.groupby("number"):
        assert group["value"].nunique() == 2 and group["sweep_value"].iloc[0] not in set(group["value"])
    for line in [f"trial {n} seed {s}:" for n in board["number"] for s in (1, 2)]:
        assert line in r.stdout  # one line per finished run
    assert "mean ± std" in r.stdout and "seed noise (pooled std)" in r.stdout


def test_finished_replicates_are_reused(tiny_sweep):
    before = {p: p.stat().st_mtime for p in (tiny_sweep / "replicates").rglob("metrics.json")}
    r = replicate(str(tiny_sweep), "--top", "2", "--seeds", "2")
    assert r.returncode == 0, r.stderr
    assert before and all(p.stat().st_mtime == t for p, t in before.items())


def test_replicate_bad_path_is_one_line(tmp_path):
    r = replicate(str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "charmlp-replicate: error:" in r.stderr


def test_summary_ranks_by_mean_and_flags_ties():
    runs = pd.DataFrame({"number": [7] * 3 + [3] * 3 + [9] * 3, "seed": [1, 2, 3] * 3,
                         "state": "COMPLETE", "sweep_value": [2.070] * 3 + [2.071] * 3 + [2.072] * 3,
                         "value": [2.080, 2.084, 2.082, 2.079, 2.081, 2.077, 2.100, 2.102, 2.098]})
    table = summarize(runs)
    assert list(table["trial"]) == [3, 7, 9]  # re-ranked by the mean: the sweep's best is second
    assert table["mean"].iloc[0] == pytest.approx(2.079) and table["std"].iloc[0] == pytest.approx(0.002)
    assert list(table["tie"]) == [False, True, False]  # 0.003 apart is noise, 0.021 is not
    assert table.attrs["noise_std"] == pytest.approx(0.002)
