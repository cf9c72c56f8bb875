"""hydra/sweeper=charmlp in a Hydra app that is not charmlp-train: installing charmlp is enough
(charmlp.configs' search-path plugin, an entry point, adds charmlp's configs to every app's search path)."""
import csv
import json
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from charmlp.configs import conf_dir
from conftest import ROOT, run_cli

APP = ROOT / "tests" / "apps" / "any_app"


def test_another_app_sweeps_with_charmlp_from_outside_the_repo(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli(sys.executable, str(APP / "my_app.py"), "-m", "hydra/sweeper=charmlp",
                "x=interval(-5,5)", "y=choice(0,1)", "hydra.sweeper.n_trials=3",
                f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with open(sweep / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["state"] for row in rows] == ["COMPLETE"] * 3
    for row in rows:  # each value is what the app returned for that trial's parameters
        x, y = float(row["params_x"]), int(row["params_y"])
        assert abs(float(row["value"]) - ((x - 2.0) ** 2 + y)) < 1e-9
    assert sorted(p.name for p in sweep.glob("trial_*")) == ["trial_0000", "trial_0001", "trial_0002"]
    # Its jobs report no training time: the summary says how busy the slots were, nothing more.
    summary = [line for line in (r.stdout + r.stderr).splitlines() if "core time:" in line]
    assert len(summary) == 1 and "slots busy" in summary[0] and "training" not in summary[0]


@pytest.mark.parametrize("forget", [False, True])
def test_every_job_on_a_parallel_slot_starts_from_the_sweeps_own_state(tmp_path, forget):
    """The parallel launcher sends a worker what all jobs share once, not with every job: each
    job must still start from the sweep's Hydra state, not from what the job before it in the
    same worker left there. A worker that lost it (`forget`) gets it again with its next job."""
    sweep = tmp_path / "sweep"
    r = run_cli(sys.executable, str(APP / "state_app.py"), "-m", "hydra/sweeper=charmlp",
                "hydra/launcher=parallel", "hydra.sweeper.n_jobs=1", "hydra.sweeper.n_trials=3",
                "x=interval(-5,5)", f"+forget_payload={forget}", f"hydra.sweep.dir={sweep}",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    jobs = [json.loads((sweep / f"trial_{n:04d}" / "job.json").read_text()) for n in range(3)]
    assert len({j["pid"] for j in jobs}) == 1  # one slot: all three ran in its worker
    assert [j["left"] for j in jobs] == [[], [], []]
    assert all(j["frozen"] > 0 for j in jobs)  # the imports are out of the collector's way


def test_sweeper_errors_name_the_app_that_runs_it(tmp_path):
    r = run_cli(sys.executable, str(APP / "my_app.py"), "-m", "hydra/sweeper=charmlp",
                "x=interval(5,-5)", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert errors and errors[0].startswith("my_app.py: error: bad search space"), r.stderr
    assert "charmlp-train" not in r.stderr


def test_every_hydra_config_of_charmlp_is_an_option_in_another_app():
    """Each file under conf/hydra/ (sweeper, its samplers and pruners, launchers) is an option
    of its group in an app whose own conf/ has none of them."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(APP / "conf")):
        loader = GlobalHydra.instance().config_loader()
        for group_dir in sorted({p.parent for p in Path(conf_dir(), "hydra").rglob("*.yaml")}):
            group = group_dir.relative_to(conf_dir()).as_posix()
            wanted = {p.stem for p in group_dir.glob("*.yaml")}
            assert wanted <= set(loader.get_group_options(group)), group
        cfg = compose("config", ["hydra/sweeper=charmlp", "hydra/launcher=slurm"],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == "charmlp.sweep.sweeper.CharmlpSweeper"
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.x == 0.0  # the app's own config, untouched
