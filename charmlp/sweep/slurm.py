"""hydra/launcher=slurm: hydra-submitit-launcher's Slurm launcher, plus one thing. A sweep that
is stopped (SIGTERM, Ctrl-C) cancels the Slurm jobs it started and that still run: the resume
queues their trials again, so they would train on for nothing and hold the nodes the resumed
trials wait for. (A SIGKILLed sweep cancels nothing; its charmlp trials stop at their next
evaluation, when they find the study has already failed them: reporting.TrialAbandoned.)"""
import getpass
import logging
import subprocess

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurm

log = logging.getLogger(__name__)


class SlurmLauncher(SubmititSlurm):
    def shutdown(self) -> None:
        """Called as the sweep loop ends: after a normal end none of its jobs is left."""
        ids = still_queued(submitted_job_ids())
        if not ids:
            return
        r = subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            log.warning("the sweep was stopped: cancelled its Slurm jobs %s", " ".join(ids))
        else:
            log.warning("could not cancel Slurm jobs %s (%s); fix: scancel them", " ".join(ids),
                        r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")


def submitted_job_ids() -> list[str]:
    """The Slurm jobs this process submitted that submitit has not seen finish (its watcher
    registers every job it submits; submitit exposes no other list of them)."""
    try:
        from submitit.slurm.slurm import SlurmJob
    except ImportError:
        return []
    watcher = SlurmJob.watcher
    return sorted(set(getattr(watcher, "_registered", ())) - set(getattr(watcher, "_finished", ())))


def still_queued(ids: list[str]) -> list[str]:
    """The jobs of `ids` (array tasks as 123_0) that Slurm still has pending or running, as
    their array job ids: a charmlp trial is a one-task array, and a pending array shows in
    squeue as 123_[0-1], so the array id is what can be matched and cancelled."""
    if not ids:
        return []
    try:
        r = subprocess.run(["squeue", "-h", "-o", "%F", "-u", getpass.getuser()], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.SubprocessError, KeyError):
        return []
    queued = set(r.stdout.split())
    return sorted({i.split("_")[0] for i in ids} & queued)
