"""What the sweep says while it runs: one line per finished trial (state, value, best so far,
done/total, elapsed, time left) and a closing summary with the share of core time that went
to training and where the rest went."""
import logging
import time
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from ..rundir import finite

log = logging.getLogger("charmlp.sweep")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


@dataclass
class Overhead:
    """Seconds per part of the trials this process ran (summed over trials)."""
    trials: int = 0
    slot: float = 0.0          # submitted -> result back in the sweep
    training: float = 0.0      # the step loop, periodic dev evaluations included
    evaluation: float = 0.0    # of which: periodic dev evaluations
    launch: float = 0.0        # submitted -> trainer started: process start, imports, Hydra job set-up
    setup: float = 0.0         # data load, model build, engine choice (and a native build)
    final: float = 0.0         # final train/dev evaluation
    results: float = 0.0       # rewriting results.csv in the sweep process
    parts: dict = field(default_factory=dict)

    def add(self, submitted: float, seconds: float, metrics: dict) -> None:
        self.trials += 1
        self.slot += seconds
        started = finite(metrics.get("started_at"))
        self.launch += started - submitted if started else 0.0
        self.training += finite(metrics.get("wall_time")) or 0.0
        self.evaluation += finite(metrics.get("time_eval")) or 0.0
        self.setup += finite(metrics.get("time_setup")) or 0.0
        self.final += finite(metrics.get("time_final_eval")) or 0.0

    def lines(self, cores: float, tail: float) -> list[str]:
        n = max(self.trials, 1)
        back = self.slot - self.launch - self.setup - self.training - self.final
        busy = (f"slots busy {100 * self.slot / cores:.1f}%, idle {100 * tail / cores:.1f}% at the "
                "end (no trial left to start while the last ones ran)")
        if not self.training:  # an app that is not charmlp-train: its jobs report no parts
            return [f"core time: {busy}"]
        return [f"core time: {100 * self.training / cores:.1f}% training, {busy}",
                f"per trial: {self.training / n:.1f} s training (of which {self.evaluation / n:.2f} s "
                f"dev evaluation); overhead {self.launch / n:.2f} s launch (process start and imports "
                f"once per slot, Hydra job set-up), {self.setup / n:.2f} s set-up (data, model, engine), "
                f"{self.final / n:.2f} s final evaluation, {back / n:.2f} s writing the run dir and "
                f"returning to the sweep, {self.results / n:.2f} s results.csv rewrite (in the sweep "
                "process)"]


class Progress:
    def __init__(self, total: int, slots: int, single_objective: bool, timeout_min: float | None = None):
        self.total, self.slots, self.single = total, slots, single_objective
        self.t0 = time.time()
        self.deadline = self.t0 + 60 * timeout_min if timeout_min else None
        self._longest = 0.0  # the longest trial so far: how long a running one may still take
        self.ran = 0
        self.overhead = Overhead()
        self._stopped = False   # no more trials will start: a slot that frees stays idle
        self._idle_from: list[float] = []  # when each such slot freed

    def trial_done(self, study: optuna.Study, number: int, state: str, values: list | None,
                   submitted: float, seconds: float, metrics: dict) -> None:
        self.ran += 1
        if self._stopped:
            self._idle_from.append(submitted + seconds)
        self._longest = max(self._longest, seconds)
        self.overhead.add(submitted, seconds, metrics)
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in FINISHED and not t.user_attrs.get("not_counted") for t in trials)
        value = " ".join(f"{v:.4f}" for v in values) if values else "-"
        elapsed = time.time() - self.t0
        left = max(self.total - done, 0)
        eta = elapsed / self.ran * left if self.ran else 0
        if self.deadline:  # no new trials after it; the running ones then finish
            eta = min(eta, max(self.deadline - time.time(), 0) + self._longest)
        log.info("trial %d %s %s | %s | %d/%d done | %s elapsed, ~%s left", number, state, value,
                 self._best(study), done, self.total, clock(elapsed), clock(eta))

    def no_more_trials(self) -> None:
        """The sweep starts no more trials (budget or timeout_min spent): the slots that free
        from now on stay idle until the end, which the summary reports apart."""
        self._stopped = True

    def _best(self, study: optuna.Study) -> str:
        try:
            if self.single:
                b = study.best_trial
                return f"best {b.value:.4f} (trial {b.number})"
            return f"pareto front: {len(study.best_trials)} trials"
        except ValueError:  # no trial complete yet
            return "best -"

    def summary(self, study: optuna.Study, results_csv) -> None:
        end = time.time()
        elapsed = end - self.t0
        log.info("sweep done in %s: %s", clock(elapsed), self._best(study))
        if self.ran:
            tail = sum(end - t for t in self._idle_from)
            for line in self.overhead.lines(self.slots * elapsed, tail):
                log.info("%s", line)
        log.info("results: %s", results_csv)
