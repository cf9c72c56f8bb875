"""hydra/launcher=parallel: Hydra's joblib launcher, extended so that each of the sweeper's
slots owns one worker process. The sweeper calls `launch` with one job at a time from one
thread per slot; each slot thread keeps its own single-process loky executor, so
- a slot that frees takes the next trial at once (no waiting for a batch),
- a worker's imports, data cache and native library are paid once per slot, not per trial,
- a worker killed mid-trial (the OOM killer, kill -9) breaks only its own slot: the trial is
  reported as WorkerDied and the slot starts a fresh process for its next trial.
A batch of several jobs (plain Hydra multirun) goes through joblib exactly as upstream."""
import logging
import threading
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
        self._lock = threading.Lock()

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if len(job_overrides) != 1 or threading.current_thread() is threading.main_thread():
            return super().launch(job_overrides, initial_job_idx)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        future = self._executor().submit(
            execute_job, initial_job_idx, job_overrides[0], self.hydra_context, self.config,
            self.task_function, 0, Singleton.get_state(), False)
        try:
            return [future.result()]
        except Exception as e:
            if not _broken_pool(e):
                raise
            self._discard()
            raise WorkerDied(f"its worker process died ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None

    def _executor(self):
        from joblib.externals.loky.process_executor import ProcessPoolExecutor
        ex = getattr(self._slot, "executor", None)
        if ex is None:
            ex = self._slot.executor = ProcessPoolExecutor(max_workers=1)
            with self._lock:
                self._executors.append(ex)
        return ex

    def _discard(self) -> None:
        ex, self._slot.executor = self._slot.executor, None
        ex.shutdown(wait=False, kill_workers=True)

    def shutdown(self) -> None:
        """Stop every slot's worker now (the sweep was interrupted)."""
        with self._lock:
            for ex in self._executors:
                ex.shutdown(wait=False, kill_workers=True)
            self._executors.clear()


def _broken_pool(e: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool
    from joblib.externals.loky.process_executor import TerminatedWorkerError
    return isinstance(e, (BrokenProcessPool, TerminatedWorkerError))
