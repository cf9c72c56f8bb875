"""Which RUNNING trials are dead. A worker stamps its trials with host, pid and a heartbeat
time (plain user attrs, so this works on every storage, journal files included); a trial is
stale when its process is gone from this host, or its heartbeat is older than the grace."""
import os
import socket
import threading
import time

import optuna

HOST = socket.gethostname()


def claim(trial: optuna.Trial) -> None:
    trial.set_user_attr("worker", {"host": HOST, "pid": os.getpid()})
    trial.set_user_attr("heartbeat_at", time.time())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(t: optuna.trial.FrozenTrial, grace: float, now: float | None = None) -> bool:
    if t.state != optuna.trial.TrialState.RUNNING:
        return False
    worker = t.user_attrs.get("worker") or {}
    if worker.get("host") == HOST and worker.get("pid") != os.getpid():
        return not pid_alive(int(worker["pid"]))
    beat = t.user_attrs.get("heartbeat_at", t.datetime_start.timestamp() if t.datetime_start else 0)
    return (now or time.time()) - beat > grace


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
