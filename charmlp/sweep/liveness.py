"""Which RUNNING trials are dead. A worker stamps its trials with who runs them (host, boot id,
pid namespace, pid and the process's start time) and a heartbeat time, as plain user attrs so
this works on every storage, journal files included.

A trial is dead when its heartbeat is older than the grace period. A vanished pid settles it
sooner, but only when the trial's process is surely on this machine and in this pid namespace:
containers share host names, and a pid seen from another namespace or boot is a different
process. A live pid whose start time differs from the recorded one was reused: dead too."""
import os
import socket
import threading
import time
from pathlib import Path

import optuna

HOST = socket.gethostname()


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:  # not Linux, or /proc hidden: the trial falls back to its heartbeat
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return None


BOOT_ID = _read("/proc/sys/kernel/random/boot_id")
PID_NAMESPACE = _pid_namespace()


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/<pid>/stat field 22), or None
    when no such process is running (zombies included: their worker is gone)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # Field 2 (the command) may hold spaces and parentheses: count fields after its last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    if fields[0] in ("Z", "X"):  # field 3, the state
        return None
    return int(fields[19])


def identity(pid: int | None = None) -> dict:
    """What tells a process apart across machines, containers and pid reuse."""
    pid = os.getpid() if pid is None else pid
    return {"host": HOST, "boot_id": BOOT_ID, "pid_namespace": PID_NAMESPACE, "pid": pid,
            "start_time": start_time(pid)}


def claim(trial: optuna.Trial, inline: bool = True) -> None:
    """Stamp the trial with this (sweep) process; `inline`: the trial runs in this process
    itself (the basic launcher), not in a worker process of its own."""
    trial.set_user_attr("worker", {**identity(), "inline": inline})
    trial.set_user_attr("heartbeat_at", time.time())


def same_machine_and_namespace(worker: dict) -> bool:
    """Whether a pid recorded by `worker` means the same process here. Records lacking any of
    the ids (older versions, or no /proc) never qualify."""
    return (BOOT_ID is not None and PID_NAMESPACE is not None
            and worker.get("host") == HOST and worker.get("boot_id") == BOOT_ID
            and worker.get("pid_namespace") == PID_NAMESPACE)


def process_gone(worker: dict) -> bool:
    """On this machine and namespace: the recorded process no longer runs (or its pid now
    belongs to a process started at another time)."""
    now = start_time(int(worker["pid"]))
    return now is None or (worker.get("start_time") is not None and now != worker["start_time"])


def sweep_died_here(t: optuna.trial.FrozenTrial) -> bool:
    """The trial ran in a worker process of its own, for a sweep process on this machine that
    is gone: the sweep was stopped (SIGKILL, a lost terminal), which took its workers with it;
    nothing says the trial was at fault. Records before `inline` existed never qualify."""
    worker = t.user_attrs.get("worker") or {}
    return (worker.get("inline") is False and same_machine_and_namespace(worker)
            and worker.get("pid") != os.getpid() and process_gone(worker))


def others_running(trials, grace: float) -> bool:
    """Whether another live sweep process runs trials of this study (several drivers share it)."""
    for t in trials:
        worker = t.user_attrs.get("worker") or {}
        mine = same_machine_and_namespace(worker) and worker.get("pid") == os.getpid()
        if t.state == optuna.trial.TrialState.RUNNING and not mine and not is_stale(t, grace):
            return True
    return False


# A sweep claims a trial within milliseconds of asking for it; one still unclaimed after this
# long was asked by a sweep process that died in between (a SIGKILL as the study opened).
UNCLAIMED_GRACE = 10.0


def is_stale(t: optuna.trial.FrozenTrial, grace: float, now: float | None = None) -> bool:
    if t.state != optuna.trial.TrialState.RUNNING:
        return False
    worker = t.user_attrs.get("worker") or {}
    if same_machine_and_namespace(worker) and worker.get("pid") != os.getpid():
        return process_gone(worker)
    beat = t.user_attrs.get("heartbeat_at", t.datetime_start.timestamp() if t.datetime_start else 0)
    return (now or time.time()) - beat > (grace if worker else min(grace, UNCLAIMED_GRACE))


def unclaimed_wait(trials, now: float | None = None) -> float:
    """Seconds until every RUNNING trial that no sweep has claimed counts as dead (0: none)."""
    now = now or time.time()
    starts = [t.datetime_start.timestamp() for t in trials if t.state == optuna.trial.TrialState.RUNNING
              and not t.user_attrs.get("worker") and t.datetime_start]
    return max([0.0] + [s + UNCLAIMED_GRACE - now for s in starts])


class Heartbeat:
    """Refreshes heartbeat_at on the given trials every `interval` seconds while active."""

    def __init__(self, storage, trial_ids: list[int], interval: float):
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self._stop.wait(self.interval):
            for tid in self.trial_ids:
                try:
                    self.storage.set_trial_user_attr(tid, "heartbeat_at", time.time())
                except Exception:  # a finished trial or a brief storage hiccup: try next beat
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
