"""hydra/launcher=parallel: Hydra's joblib launcher, extended so that each of the sweeper's
slots owns one worker process. The sweeper calls `launch` with one job at a time from one
thread per slot; each slot thread keeps its own single-process loky executor, so
- a slot that frees takes the next trial at once (no waiting for a batch),
- a worker's imports, data cache and native library are paid once per slot, not per trial,
- a worker killed mid-trial (the OOM killer, kill -9) breaks only its own slot: the trial is
  reported as WorkerDied and the slot starts a fresh process for its next trial,
- the slots' first workers are forked from the sweep process before it starts any thread
  (`prestart`), so they begin with its imports done (torch alone takes ~2 s a process),
- what every job of the sweep shares (Hydra's context, the sweep config, the task function,
  Hydra's global state) is pickled once and sent to each worker once (`_Payload`), not with
  every job; each job still unpickles its own fresh copy, as upstream's jobs do.
A batch of several jobs (plain Hydra multirun) goes through joblib exactly as upstream."""
import contextlib
import gc
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher._core import execute_job
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

log = logging.getLogger(__name__)


class WorkerDied(RuntimeError):
    """The process running a trial died (killed by a signal, out of memory, a crash)."""


class ParallelLauncher(JoblibLauncher):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._slot = threading.local()
        self._executors: list = []
        self._forked: list = []  # prestarted executors no slot has taken yet
        self._lock = threading.Lock()
        self._payload: _Payload | None = None

    def prestart(self, n: int) -> None:
        """Fork n slots' worker processes now. Only from a process that runs no other thread
        (a fork copies just the calling one, and any lock another holds stays locked) and has
        not set up CUDA; otherwise each slot starts a fresh process on its first trial."""
        if not _can_fork():
            return
        from joblib.externals.loky.process_executor import ProcessPoolExecutor
        for stream in (sys.stdout, sys.stderr):  # else the child writes their buffers again
            with contextlib.suppress(AttributeError, ValueError):  # None, or closed
                stream.flush()
        context = multiprocessing.get_context("fork")
        forked = [ProcessPoolExecutor(max_workers=1, context=context, initializer=_worker_start,
                                      initargs=(os.getpid(), True)) for _ in range(n)]
        self._forked += forked
        self._executors += forked
        for ex in forked:  # all forks first: each executor then starts a thread of its own
            ex._adjust_process_count()
        for ex in forked:  # that thread watches the worker, and stops it on shutdown()
            ex._ensure_executor_running()

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if len(job_overrides) != 1 or threading.current_thread() is threading.main_thread():
            return super().launch(job_overrides, initial_job_idx)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        try:
            return [self._submit(initial_job_idx, job_overrides[0])]
        except Exception as e:
            if not _broken_pool(e):
                raise
            self._discard()
            raise WorkerDied(f"its worker process died ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None

    def _submit(self, idx: int, overrides: Sequence[str]) -> JobReturn:
        """Run one job on this slot's worker, sending the payload only the first time."""
        with self._lock:
            if self._payload is None:
                # Once a sweep: upstream too takes Hydra's global state once per batch.
                self._payload = _Payload(self.hydra_context, self.config, self.task_function)
        payload, ex = self._payload, self._executor()
        sent = getattr(self._slot, "sent", False)
        try:
            ret = ex.submit(_run_job, payload.key, None if sent else payload.blob, idx, overrides).result()
        except _PayloadMissing:  # a worker that never got it: send it with the job
            ret = ex.submit(_run_job, payload.key, payload.blob, idx, overrides).result()
        self._slot.sent = True
        return ret

    def _executor(self):
        from joblib.externals.loky.process_executor import ProcessPoolExecutor
        ex = getattr(self._slot, "executor", None)
        if ex is None:
            with self._lock:
                if self._forked:  # prestarted: already among self._executors
                    ex = self._forked.pop()
                else:
                    ex = ProcessPoolExecutor(max_workers=1, initializer=_worker_start,
                                             initargs=(os.getpid(), False))
                    self._executors.append(ex)
            self._slot.executor = ex
        return ex

    def _discard(self) -> None:
        ex, self._slot.executor, self._slot.sent = self._slot.executor, None, False
        ex.shutdown(wait=False, kill_workers=True)

    def shutdown(self) -> None:
        """Stop every slot's worker now (the sweep was interrupted)."""
        with self._lock:
            for ex in self._executors:
                ex.shutdown(wait=False, kill_workers=True)
            self._executors.clear()
            self._forked.clear()


class _Payload:
    """What every job of a sweep is run with, pickled once (it is ~150 KB and took ~25 ms of
    the sweep process per job, in a thread that waits for the GIL while the sweep works)."""

    def __init__(self, hydra_context, config, task_function) -> None:
        # loky's own pickler (cloudpickle where installed), as for any job: the task function
        # may be a closure
        from joblib.externals.loky.backend.reduction import dumps
        self.key = uuid.uuid4().hex
        self.blob = dumps((hydra_context, config, task_function, Singleton.get_state()))


class _PayloadMissing(Exception):
    """The worker has not received this sweep's payload."""


_PAYLOADS: dict[str, bytes] = {}  # in a worker: each sweep's payload, by key


def _run_job(key: str, blob: bytes | None, idx: int, overrides: Sequence[str]) -> JobReturn:
    """In the worker: upstream's execute_job with a fresh copy of the payload, so no job
    sees what an earlier one left in Hydra's global state."""
    if blob is not None:
        _PAYLOADS.clear()  # a worker serves one sweep
        _PAYLOADS[key] = blob
    elif key not in _PAYLOADS:
        raise _PayloadMissing(key)
    hydra_context, config, task_function, state = pickle.loads(_PAYLOADS[key])
    _freeze_imports()
    return execute_job(idx, overrides, hydra_context, config, task_function, 0, state, False)


def _freeze_imports() -> None:
    """Without psutil, loky collects garbage after every job that ran over a second. A full
    collection scanned every object the imports made (torch, Hydra, Optuna): 0.13-0.25 s a job,
    while the sweep waited to start the next one there. Once the first payload is unpickled
    every import is done: what exists then is frozen, and later collections skip it."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True


_frozen = False  # in a worker: whether _freeze_imports ran


def _can_fork() -> bool:
    if sys.platform != "linux" or threading.active_count() > 1:
        return False
    torch = sys.modules.get("torch")
    return not (torch is not None and torch.cuda.is_initialized())


def _worker_start(sweep_pid: int, forked: bool) -> None:
    """First thing in a slot's worker: signals end it (interrupts.end_on_signal); a forked one
    opens its own storages; and it dies with the sweep process. A worker left behind by a
    SIGKILL of the sweep process alone trained on for nothing (the resume queues its trial
    again) and then waited forever."""
    from . import interrupts, storage
    interrupts.end_on_signal()
    if forked:
        storage.forget_inherited()
    if sys.platform == "linux":
        import ctypes
        PR_SET_PDEATHSIG = 1  # sent when the thread that started this process ends
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != sweep_pid:  # it ended before that call
            os._exit(1)


def _broken_pool(e: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool
    from joblib.externals.loky.process_executor import TerminatedWorkerError
    return isinstance(e, (BrokenProcessPool, TerminatedWorkerError))
