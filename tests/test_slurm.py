"""hydra/launcher=slurm on a real one-node Slurm cluster (.ci/slurm.sh starts one, partition
`ci`). Skipped, with the reason, when sinfo can't reach a cluster."""
import json
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import TINY, run_cli

PARTITION = "ci"


def cluster_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "no Slurm on this machine (sinfo not found); start one with: bash .ci/slurm.sh"
    try:
        r = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%T"], capture_output=True,
                           text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 30 s; start the cluster with: bash .ci/slurm.sh"
    if r.returncode or not {"idle", "mixed", "allocated"} & set(r.stdout.split()):
        return (f"no usable node in Slurm partition {PARTITION!r} ({(r.stdout + r.stderr).strip() or 'none'}); "
                "start the cluster with: bash .ci/slurm.sh")
    return None


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(cluster_problem() is not None, reason=str(cluster_problem()))]
# As the README's Slurm section has it, on this cluster's partition, one CPU per trial (2 cores).
SLURM = ["hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.sweeper.n_jobs=2"]


def sweep(names_file, sweep_dir, *extra, timeout=600):
    return run_cli("charmlp-train", "-m", "+sweep=smoke", *SLURM, f"data.path={names_file}",
                   f"hydra.sweep.dir={sweep_dir}", *extra, cwd=sweep_dir.parent, timeout=timeout)


def slurm_jobs(sweep_dir) -> list[str]:
    """The ids of the jobs submitit sent: one folder each under .submitit/."""
    return sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit())


def test_trials_run_as_slurm_jobs_and_one_past_its_time_limit_is_retried_then_fails(names_file, tmp_path):
    """One tiny sweep (the slowest test here, so only one): a grid of a 300-step trial and one
    that would train for hours, each its own Slurm job, 1 minute limit (Slurm's shortest). The
    short one completes; the long one is killed at its limit, run again once (max_retries=1),
    killed again, and is FAIL with its reason; the driver goes on and exits normally."""
    d = tmp_path / "sweep"
    r = sweep(names_file, d, "hydra.launcher.timeout_min=1", "hydra/sweeper/sampler=grid",
              "trainer.steps=choice(300,100000000)", "trainer.eval_interval=100",
              "model.n_embd=8", "model.n_hidden=64", "hydra.sweeper.n_trials=2",
              "hydra.sweeper.max_retries=1", "hydra.sweeper.max_failure_rate=1.0", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_csv(d / "results.csv").set_index("number")
    long = df[df["params_trainer.steps"] == 100000000]
    short = df[df["params_trainer.steps"] == 300]
    assert list(short.state) == ["COMPLETE"]
    assert len(long) == 2 and list(long.state) == ["FAIL", "FAIL"]  # the first try and its one retry
    first, retry = long.index
    assert "interrupted" in long.loc[first, "fail_reason"]
    assert "UncompletedJobError" in long.loc[retry, "fail_reason"] and "retries" in long.loc[retry, "fail_reason"]
    states = subprocess.run(["sacct", "-n", "-X", "-o", "State", "-j", ",".join(slurm_jobs(d))],
                            capture_output=True, text=True).stdout.split()
    assert states.count("TIMEOUT") == 2 and states.count("COMPLETED") == 1, states
    trial = d / f"trial_{short.index[0]:04d}"
    assert json.loads((trial / "metrics.json").read_text())["status"] == "completed"


def test_a_stopped_sweep_cancels_its_slurm_jobs(names_file, tmp_path):
    """SIGTERM to the sweep (a scheduler's stop, Ctrl-C): its trials are queued again for the
    resume, so their Slurm jobs, which would train on for hours here, are cancelled."""
    import os
    import signal
    import sys
    import time
    d = tmp_path / "sweep"
    p = subprocess.Popen([sys.executable, "-m", "charmlp.train", "-m", "+sweep=smoke", *SLURM,
                          f"data.path={names_file}", f"hydra.sweep.dir={d}", "hydra.sweeper.n_trials=2",
                          "trainer.steps=100000000", "trainer.eval_interval=100000"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not all((d / f"trial_000{i}" / ".hydra" / "config.yaml").exists() for i in (0, 1)):
        assert p.poll() is None and time.monotonic() < deadline, "the trials never started"
        time.sleep(0.2)
    jobs = slurm_jobs(d)
    os.kill(p.pid, signal.SIGTERM)
    err = p.communicate(timeout=120)[0]
    assert p.returncode == 128 + signal.SIGTERM, err
    assert f"cancelled its Slurm jobs {' '.join(jobs)}" in err
    queued = subprocess.run(["squeue", "-h", "-o", "%F", "-t", "PD,CF,R,S"], capture_output=True,
                            text=True).stdout.split()  # cancelled ones may still be completing (CG)
    assert not set(jobs) & set(queued)
