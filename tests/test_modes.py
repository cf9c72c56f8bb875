"""`+sweep=NAME` sweeps with or without -m; a trial reruns as a single run; a run that fails
before training leaves no run dir behind."""
import json

import pytest
import yaml

from charmlp.train import remove_if_empty, with_multirun
from conftest import TINY, run_cli


def test_a_sweep_preset_turns_on_multirun_unless_another_mode_is_asked():
    assert with_multirun(["+sweep=smoke", "a=1"]) == ["-m", "+sweep=smoke", "a=1"]
    for args in (["-m", "+sweep=smoke"], ["+sweep=smoke", "--cfg", "job"], ["--run", "+sweep=smoke"],
                 ["model.n_embd=4"], ["data.path=sweep=x"]):
        assert with_multirun(args) == args


@pytest.mark.slow
def test_sweep_without_dash_m_sweeps_and_its_trial_reruns_as_one_run(names_file, tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("charmlp-train", "+sweep=smoke", f"data.path={names_file}", *TINY,
                "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((sweep / "trial_0000" / "metrics.json").read_text())["status"] == "completed"
    assert not (tmp_path / "outputs" / "runs").exists()  # no single run instead of the sweep
    assert yaml.safe_load((sweep / "trial_0000" / ".hydra" / "hydra.yaml").read_text())["hydra"]["mode"] == "MULTIRUN"
    out = tmp_path / "rerun"
    r = run_cli("charmlp-rerun", str(sweep / "trial_0000"), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load((out / ".hydra" / "hydra.yaml").read_text())["hydra"]["mode"] == "RUN"
    assert json.loads((out / "metrics.json").read_text())["dev_loss"] == \
        json.loads((sweep / "trial_0000" / "metrics.json").read_text())["dev_loss"]


@pytest.mark.slow
def test_a_run_that_fails_on_its_data_leaves_no_run_dir(tmp_path):
    r = run_cli("charmlp-train", f"data.path={tmp_path / 'missing.txt'}", *TINY, cwd=tmp_path)
    assert r.returncode == 2
    said = [line for line in (r.stdout + r.stderr).splitlines() if "data file not found" in line]
    assert len(said) == 1 and "removed its run dir" in said[0], r.stdout + r.stderr
    assert list((tmp_path / "outputs" / "runs").iterdir()) == []


def test_only_a_dir_holding_nothing_but_hydras_files_is_removed(tmp_path):
    for name, extra in (("bare", None), ("trained", "metrics.json"), ("notes", "notes.txt")):
        d = tmp_path / name
        (d / ".hydra").mkdir(parents=True)
        (d / "train.log").write_text("log\n")
        if extra:
            (d / extra).write_text("{}")
    assert "removed its run dir" in remove_if_empty(tmp_path / "bare") and not (tmp_path / "bare").exists()
    assert remove_if_empty(tmp_path / "trained") == "" and (tmp_path / "trained").is_dir()
    assert remove_if_empty(tmp_path / "notes") == "" and (tmp_path / "notes").is_dir()
