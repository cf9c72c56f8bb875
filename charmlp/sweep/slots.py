"""Run trials on N slots so that a slot takes the next trial as soon as its trial ends.

Each slot is a daemon thread that hands one job at a time to the Hydra launcher
(`launcher.launch([overrides], initial_job_idx=trial_number)`), so any launcher that may be
called from several threads (joblib, submitit local/Slurm) runs N trials at once without
batches. The basic launcher runs jobs inside the sweep process, so it gets one inline slot."""
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .interrupts import shield

Launch = Callable[[list[list[str]], int], Any]


@dataclass
class Job:
    trial: Any                 # the optuna.Trial being run
    overrides: tuple
    submitted: float = field(default_factory=time.time)
    ended: float = 0.0
    result: Any = None         # the launcher's JobReturn ...
    error: BaseException | None = None  # ... or what the launcher raised
    slot: int = -1
    outcome: Any = None        # what the sweep recorded: (state name, values)

    @property
    def seconds(self) -> float:
        return self.ended - self.submitted


class Slots:
    def __init__(self, launch: Launch, n: int, inline: bool):
        self.launch, self.n, self.inline = launch, 1 if inline else max(1, n), inline
        self.running: dict[int, Job] = {}
        self._done: queue.Queue[Job] = queue.Queue()
        self._inboxes: list[queue.Queue] = []
        if not inline:
            for _ in range(self.n):
                inbox: queue.Queue = queue.Queue()
                threading.Thread(target=self._serve, args=(inbox,), daemon=True).start()
                self._inboxes.append(inbox)
        self._free = list(range(self.n))

    def free(self) -> int:
        return len(self._free)

    def submit(self, trial, overrides: tuple) -> None:
        job = Job(trial, overrides)
        self.running[trial.number] = job
        job.slot = slot = self._free.pop()
        if self.inline:
            with shield(False):  # the trial trains here: a stop must reach it
                self._run(job)
        else:
            self._inboxes[slot].put(job)

    def wait(self, timeout: float | None = None) -> Job | None:
        """The next finished job (its slot freed), or None after `timeout` seconds."""
        try:
            with shield(False):  # only waiting: the safe place for a stop to land
                job = self._done.get(timeout=timeout)
        except queue.Empty:
            return None
        del self.running[job.trial.number]
        self._free.append(job.slot)
        return job

    def drain(self) -> list[Job]:
        """The jobs that have ended but were not yet waited for (when a stop lands in wait())."""
        jobs = []
        while True:
            try:
                job = self._done.get_nowait()
            except queue.Empty:
                return jobs
            del self.running[job.trial.number]
            self._free.append(job.slot)
            jobs.append(job)

    def _serve(self, inbox: queue.Queue) -> None:
        while True:
            self._run(inbox.get())

    def _run(self, job: Job) -> None:
        # Inline, Ctrl-C and SIGTERM must reach the sweep loop; in a slot thread nothing but
        # the job itself can raise, and everything it raises is the loop's to judge.
        catch = Exception if self.inline else BaseException
        try:
            job.result = self.launch([list(job.overrides)], job.trial.number)[0]
        except catch as e:
            job.error = e
        job.ended = time.time()
        self._done.put(job)
