"""CharmlpSweeperImpl: the official Optuna sweeper's parts (search-space parsing, trial
configuration, launcher) driven by a loop that resumes, shares a total budget between
workers, keeps every slot busy, lets running trials be pruned, names trial directories by
trial number, and records every trial's metrics."""
import functools
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from hydra.core.utils import JobStatus
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import ListConfig, OmegaConf
from optuna.trial import TrialState

from ..atomic import write_json
from ..errors import CharmlpError
from ..results import collect, write_outputs
from ..rundir import (METRIC_KEYS, RESULTS_CSV, STUDY_JSON, finite, read_metrics, storage_file,
                      task_overrides, trial_dirname)
from . import budget, interrupts
from .liveness import (UNCLAIMED_GRACE, Heartbeat, claim, is_stale, others_running, sweep_died_here,
                       unclaimed_wait)
from .order import LengthModel, longest_first
from .progress import Progress
from .slots import Job, Slots
from .storage import default_url, open_storage, redact

log = logging.getLogger(__name__)


# What a launcher raises when the process running a trial died (charmlp's parallel launcher;
# submitit for a Slurm task killed for its time or memory limit): the trial is run again.
WORKER_DEATHS = ("WorkerDied", "UncompletedJobError")
SETUP_ATTR = "fixed_overrides"  # study attr: the command's fixed task overrides (a resume must match)


class CharmlpSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *args: Any, heartbeat_interval: float, grace_period: float,
                 timeout_min: float | None = None, max_retries: int = 1, pruner: Any = None,
                 allow_changed_overrides: bool = False,
                 reseed: Callable[[int], Any] | None = None) -> None:
        super().__init__(*args)
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.timeout_min, self.max_retries = timeout_min, max_retries
        self.allow_changed_overrides = allow_changed_overrides
        self.pruner, self.reseed = pruner, reseed
        self._composed: set[tuple] = set()  # config-group choices known to compose
        self._grid: dict | None = None  # a grid sampler's points, per param
        self._first_number = 0  # this run's first trial number (set when the study opens)
        self.interrupted = 0  # the running or held trials a stop queued again

    # ---- set-up -------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        space, fixed, fixed_overrides = self._search_space(arguments)
        study, total = self._open_study(space)
        self._check_same_setup(study, fixed, fixed_overrides)
        # Trials from here on are this run's (a resumed sweep's old failures are not its own).
        self._first_number = max((t.number for t in study.get_trials(deepcopy=False)), default=-1) + 1
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.sweep_dir / STUDY_JSON, {"storage": self._portable_storage(),
                                                 "study_name": study.study_name})
        progress = Progress(total, self.n_jobs, len(study.directions) == 1, self.timeout_min)
        with interrupts.handled():
            try:
                self._loop(study, total, space, fixed, fixed_overrides, progress)
            finally:
                self._write_results()
        self._write_best(study)
        progress.summary(study, self.sweep_dir / RESULTS_CSV)

    def _search_space(self, arguments: list[str]):
        self._process_searchspace_config()
        try:
            space, fixed, fixed_overrides = create_params_from_overrides(
                self._parse_sweeper_params_config() + list(arguments))
        except ValueError as e:  # Optuna's distributions reject low > high, empty ranges
            raise CharmlpError(f"bad search space: {e}; fix: hydra.sweeper.params") from None
        for name in fixed:
            space.pop(name, None)
        return space, fixed, fixed_overrides

    def _open_study(self, space) -> tuple[optuna.Study, int]:
        total = self.n_trials
        if _is_grid(self.sampler):
            self._grid = {k: self._to_grid_sampler_choices(d) for k, d in space.items()}
            self.sampler = self.sampler(self._grid)
            total = min(total, math.prod(len(v) for v in self._grid.values()))
        self.storage = self.storage or default_url(self.sweep_dir)
        file = storage_file(self.storage)
        new_file = file is not None and not file.exists()
        storage = open_storage(self.storage)
        # Before creating anything: a refused sweep must leave no new study behind, nor a new
        # empty storage file (a reader would then say "no study" instead of the refusal's cause).
        try:
            self._check_dirs(_known_numbers(storage, self.study_name))
        except CharmlpError:
            if new_file:
                file.unlink(missing_ok=True)
            raise
        study = optuna.create_study(
            study_name=self.study_name, storage=storage, sampler=self.sampler, pruner=self.pruner,
            directions=self._get_directions(), load_if_exists=True)
        self.study_name = study.study_name
        self._reseed(study)
        log.info("study %s in %s: %d trials already, budget %d", study.study_name, redact(self.storage),
                 len(study.trials), total)
        return study, total

    def _reseed(self, study: optuna.Study) -> None:
        """A resumed study continues its sampler's stream instead of replaying it: the seed
        is derived from the configured one and the number of trials already there, so a
        resume explores new points and stays reproducible."""
        n = len(study.get_trials(deepcopy=False))
        # Not a grid: its points are in the study, and its seed fixes the order that maps
        # trial numbers to points (another seed would hand a resumed sweep points it has run).
        if n and self.reseed is not None and self._grid is None:
            study.sampler = self.reseed(n)

    def _check_same_setup(self, study: optuna.Study, fixed: dict, fixed_overrides: list) -> None:
        """A study's trials are comparable only if they trained alike: a resume whose fixed
        overrides (data.path=, trainer.steps=, ...; not the swept params, not hydra.*) differ
        from those its finished trials ran with is refused. Until a trial finishes there is
        nothing to mix with: a sweep whose every trial failed on a bad override takes the fix."""
        mine = {**{k: str(v) for k, v in fixed.items()}, **{o: "(deleted)" for o in fixed_overrides}}
        theirs = study.user_attrs.get(SETUP_ATTR)
        if theirs == mine:
            return
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if theirs is not None and trials:
            changed = ", ".join(f"{k}: {theirs.get(k, '(unset)')} -> {mine.get(k, '(unset)')}"
                                for k in sorted(set(theirs) | set(mine)) if theirs.get(k) != mine.get(k))
            if self.allow_changed_overrides:  # the user says the trials stay comparable
                log.warning("study %s: fixed overrides changed (%s), allowed by "
                            "hydra.sweeper.allow_changed_overrides", study.study_name, changed)
                return  # the study keeps its first ones: every such resume must say so again
            raise CharmlpError(
                f"study {study.study_name!r} holds {len(trials)} finished trials run with other fixed "
                f"overrides ({changed}); the new trials would not be comparable with them; fix: "
                "the original overrides, or a new hydra.sweeper.study_name / hydra.sweep.dir "
                "(or hydra.sweeper.allow_changed_overrides=true where they stay comparable, "
                "e.g. the same data by another path)")
        study.set_user_attr(SETUP_ATTR, mine)

    def _check_dirs(self, known: set[int]) -> None:
        """Trial dirs the study doesn't know mean another study wrote here: never overwrite."""
        strangers = sorted(p.name for p in self.sweep_dir.glob("trial_*")
                           if p.name[6:].isdigit() and int(p.name[6:]) not in known)
        if strangers:
            raise CharmlpError(
                f"{self.sweep_dir} holds {strangers[0]} and {len(strangers) - 1} more trial dirs that "
                f"study {self.study_name!r} in {redact(self.storage)} does not know; fix: use the "
                "original hydra.sweeper.storage, or a new hydra.sweep.dir / study_name")

    def _portable_storage(self) -> str:
        """The default SQLite file is named relative to the sweep dir, so a moved sweep dir
        still finds its study."""
        return "sqlite:///study.db" if self.storage == default_url(self.sweep_dir) else self.storage

    # ---- the loop -----------------------------------------------------------------------
    def _loop(self, study, total, space, fixed, fixed_overrides, progress: Progress) -> None:
        inline = isinstance(self.launcher, BasicLauncher)
        deadline = time.time() + 60 * self.timeout_min if self.timeout_min else math.inf
        beats: dict[int, Heartbeat] = {}
        held: list[Job] = []  # the last trials, asked together, waiting for a slot
        slots, finished = None, None
        try:
            if not inline and hasattr(self.launcher, "prestart"):
                self.launcher.prestart(self.n_jobs)  # before Slots starts its threads
            slots = Slots(self.launcher.launch, self.n_jobs, inline=inline)
            progress.slots = slots.n
            while True:
                while slots.free():
                    job = self._next_job(study, total, space, fixed, fixed_overrides, held,
                                         slots.n, deadline, beats)
                    if job is None:
                        progress.no_more_trials()
                        break
                    if job is not False:
                        slots.submit(job.trial, job.overrides)
                if finished is not None:  # after refilling the slots: no core waits for this
                    self._report(study, finished, progress)
                    finished = None
                if not slots.running:
                    if time.time() >= deadline:
                        log.info("hydra.sweeper.timeout_min=%s reached: no new trials", self.timeout_min)
                    return
                finished = slots.wait()
                beats.pop(finished.trial.number).__exit__(None, None, None)
                finished.outcome = self._record(study, finished)
        except BaseException:
            ended = slots.drain() if slots else []  # before the stop landed
            for job in filter(_ran_to_its_end, ended):  # a finished trial stays finished
                beats.pop(job.trial.number).__exit__(None, None, None)
                job.outcome = self._record(study, job)
            # The others were cut short by the stop itself (their workers took the signal too).
            stopped = ([j for j in ended if not _ran_to_its_end(j)]
                       + list(slots.running.values() if slots else ()) + held)
            self.interrupted = len(stopped)
            for job in stopped:
                self._retry(study, job.trial, "interrupted: the sweep was stopped while it ran")
            raise
        finally:
            for beat in beats.values():
                beat.__exit__(None, None, None)
            # The slots' worker processes: idle when the sweep is done, killed when it is stopped.
            getattr(self.launcher, "shutdown", lambda: None)()

    def _next_job(self, study, total, space, fixed, fixed_overrides, held: list[Job], n_slots: int,
                  deadline: float, beats: dict) -> Job | None | bool:
        """The trial a free slot runs next (see _next_trial). Once at most twice as many
        trials are left to ask as there are slots, all of them are asked at once and held,
        longest first (order.py)."""
        if time.time() >= deadline:
            for job in held:  # asked, never started: they spend no budget
                beats.pop(job.trial.number).__exit__(None, None, None)
                budget.fail_uncounted(study, job.trial._trial_id, "not started: timeout_min reached")
            held.clear()
            return None
        if held:
            return held.pop(0)
        job = self._next_trial(study, total, space, fixed, fixed_overrides)
        if not job:
            return job
        self._beat(study, job, beats)
        trials = study.get_trials(deepcopy=False)
        left = total - budget.used(trials)  # still to ask after this one
        # Why twice: order.py. Other sweep processes on the study would wait while this one
        # holds trials its slots cannot start yet: then only as many as its slots (the scan
        # for them only once the count alone would hold).
        if not 0 < left < 2 * n_slots or (
                left >= n_slots and others_running(trials, self.grace_period)):
            return job
        model = LengthModel([t for t in trials if t.state == TrialState.COMPLETE])
        if model.seconds(job.trial.params) is None:  # nothing to order by
            return job
        held[:] = [job]
        for _ in range(left):
            nxt = self._next_trial(study, total, space, fixed, fixed_overrides)
            if not nxt:  # it failed at once (asking goes on once the held ones ran), or no budget
                break
            self._beat(study, nxt, beats)
            held.append(nxt)
        held[:] = longest_first(held, model)
        log.info("the last %d trials start longest first: %s", len(held),
                 ", ".join(str(j.trial.number) for j in held))
        return held.pop(0)

    def _beat(self, study, job: Job, beats: dict) -> None:
        """From the ask on, the trial is this process's: a heartbeat shows it alive."""
        beats[job.trial.number] = Heartbeat(
            study._storage, [job.trial._trial_id], self.heartbeat_interval).__enter__()

    def _report(self, study, job: Job, progress: Progress) -> None:
        """results.csv rewritten and the trial's progress line, once it is recorded."""
        t = time.perf_counter()
        self._write_results()
        progress.overhead.results += time.perf_counter() - t
        state, values = job.outcome
        progress.trial_done(study, job.trial.number, state, values, job.submitted, job.seconds,
                            read_metrics(self.sweep_dir / trial_dirname(job.trial.number))[0])

    def _next_trial(self, study, total, space, fixed, fixed_overrides) -> Job | None | bool:
        """The next trial with its overrides; None when the budget is spent; False when the
        trial asked for failed at once (its config does not compose)."""
        self._recover_stale(study)
        # Before asking: a resumed study already past the limit stops without new trials.
        self._check_failures(study, total)
        trial = self._ask(study, total)
        if trial is None:
            return None
        try:
            overrides = self._configure_trials([trial], space, fixed, fixed_overrides)[0]
        except Exception as e:  # a sampler or search-space extension that fails: one line, no RUNNING trial
            budget.fail_uncounted(study, trial._trial_id, f"sampler error: {e}")
            raise CharmlpError(f"the sampler failed to propose trial {trial.number} "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                               "fix: hydra/sweeper/sampler=... or its package, or the search space") from None
        # The subdir is not part of the check: it differs for every trial, so with it each
        # trial's config was composed again (0.4 s of the sweep process before each start).
        if not self._composable(study, trial, tuple(overrides)):
            return False
        return Job(trial, tuple(overrides) + (f"hydra.sweep.subdir={trial_dirname(trial.number)}",))

    def _composable(self, study, trial, overrides) -> bool:
        """Whether the trial's config composes. One that doesn't (e.g. choice(mlp, nope) over a
        config group) fails here with the reason; inside the launcher it would take its slot
        down, and its retry the next run the same way. Overrides of existing plain values
        (model.n_embd=24) cannot change whether a config composes, so each distinct set of the
        other overrides (config-group choices, new keys) is composed once."""
        groups = tuple(o for o in overrides if not self._plain_value(o))
        if groups in self._composed:
            return True
        try:
            self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            self._composed.add(groups)
            return True
        except Exception as e:
            reason = f"config error: {' '.join(str(e).split('Config search path')[0].split())}"
            trial.set_user_attr("overrides", task_overrides(overrides))
            self._fail(study, trial, reason)
            return False

    def _plain_value(self, override: str) -> bool:
        key = override.split("=", 1)[0]
        if key.startswith(("+", "~", "hydra")):
            return False
        node = OmegaConf.select(self.config, key, default=None, throw_on_missing=False)
        return isinstance(node, (int, float, str, bool))

    def _ask(self, study: optuna.Study, total: int) -> optuna.Trial | None:
        trials = study.get_trials(deepcopy=False)
        if total - budget.used(trials) <= 0:
            # A trial asked by a sweep process that died before claiming it holds budget that
            # no trial will use: wait until it counts as dead (seconds), recover it, ask again.
            wait = min(unclaimed_wait(trials), UNCLAIMED_GRACE)
            if not wait:
                return None
            log.info("a trial no sweep process claimed holds budget: waiting %.0f s to recover it", wait)
            time.sleep(wait + 0.1)
            self._recover_stale(study)
            if total - budget.used(study.get_trials(deepcopy=False)) <= 0:
                return None
        before = {t.number for t in study.get_trials(deepcopy=False)}
        try:
            trial = study.ask()
        except Exception as e:  # the trial was created before the sampler failed: fail it
            reason = f"the sampler failed ({type(e).__name__}: {_first_line(e)})"
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number not in before and "worker" not in t.user_attrs:
                    budget.fail_uncounted(study, t._trial_id, reason)
            raise CharmlpError(f"{reason}; fix: hydra/sweeper/sampler=... or install its package") from None
        if not budget.within_budget(study.get_trials(deepcopy=False), trial.number, total):
            budget.fail_uncounted(study, trial._trial_id, "over budget: other workers took the last trials")
            return None
        claim(trial, inline=isinstance(self.launcher, BasicLauncher))
        _inherit_grid_id(study, trial)
        return trial

    def _recover_stale(self, study: optuna.Study) -> None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not is_stale(t, self.grace_period):
                continue
            try:
                if sweep_died_here(t):  # stopping the sweep never uses up a trial's retries
                    self._retry(study, t, "interrupted: the sweep process running it was killed")
                elif not t.user_attrs.get("worker"):  # never claimed, so never started
                    self._retry(study, t, "interrupted: the sweep process that asked for it died "
                                "before starting it")
                else:
                    self._worker_died(study, t, "its worker died")
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another sweep process recovered it first

    def _worker_died(self, study: optuna.Study, t, reason: str) -> None:
        """Run the trial again, at most hydra.sweeper.max_retries times; then it is FAIL."""
        retries = int(t.user_attrs.get("retries", 0))
        if retries < self.max_retries:
            self._retry(study, t, f"interrupted: {reason}", retries + 1)
            return
        why = (f"{reason}, and so did its {retries} retries (hydra.sweeper.max_retries="
               f"{self.max_retries})" if retries else f"{reason} (hydra.sweeper.max_retries=0)")
        self._fail(study, t, why)

    def _retry(self, study: optuna.Study, t, reason: str, retries: int | None = None) -> None:
        """Fail an interrupted trial without spending budget, and queue its params again."""
        retries = int(t.user_attrs.get("retries", 0)) if retries is None else retries
        if budget.fail_uncounted(study, t._trial_id, reason):
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retries": retries},
                                skip_if_exists=False)
            log.warning("trial %d %s; queued again", t.number, reason)

    def _record(self, study: optuna.Study, job: Job) -> tuple[str, list | None]:
        """Tell the study how the job ended; return (state name, values)."""
        trial = job.trial
        try:
            self._record_attrs(trial, job)
            if job.error is not None:  # the launcher failed: the worker died, or the job's set-up
                reason = f"{type(job.error).__name__}: {_one_line(job.error)}"
                if type(job.error).__name__ not in WORKER_DEATHS:
                    self._fail(study, trial, reason)
                    return "FAIL", None
                self._worker_died(study, trial, reason)
                return "RETRIED" if self._was_requeued(study, trial) else "FAIL", None
            ret = job.result
            if ret.status == JobStatus.COMPLETED:
                values = self._values(ret._return_value)
                if isinstance(values, list):
                    self._tell(study, trial, TrialState.COMPLETE, values)
                    return "COMPLETE", values
                self._fail(study, trial, values)
                return "FAIL", None
            if isinstance(ret._return_value, optuna.TrialPruned):
                self._tell(study, trial, TrialState.PRUNED, None)
                last = study._storage.get_trial(trial._trial_id).value
                return "PRUNED", [last] if last is not None else None
            self._fail(study, trial, f"{type(ret._return_value).__name__}: {_first_line(ret._return_value)}")
            return "FAIL", None
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial %d was already finished by another worker; going on", trial.number)
            return "FINISHED ELSEWHERE", None

    def _record_attrs(self, trial, job: Job) -> None:
        out = self.sweep_dir / trial_dirname(trial.number)
        trial.set_user_attr("output_dir", trial_dirname(trial.number))  # relative: dirs can move
        trial.set_user_attr("overrides", task_overrides(job.overrides))
        trial.set_user_attr("duration_s", job.seconds)
        metrics, _ = read_metrics(out)
        for key in METRIC_KEYS:
            if isinstance(metrics.get(key), (int, float)):
                trial.set_user_attr(key, metrics[key])

    def _values(self, ret) -> list[float] | str:
        """The objective's values, one per direction, or why they are not usable."""
        n = len(self._get_directions())
        raw = list(ret) if isinstance(ret, (list, tuple, ListConfig)) else [ret]
        if len(raw) != n:
            return (f"objective returned {len(raw)} value(s) {ret!r}, the study has {n} "
                    "direction(s); fix: optimized_metric and hydra.sweeper.direction must match")
        values = [finite(v) for v in raw]
        if any(v is None for v in values):
            return f"objective returned {ret!r}, not finite numbers"
        return values

    def _fail(self, study, trial, reason: str) -> None:
        """`trial`: one this run asked for (an optuna.Trial), or the FrozenTrial of a dead
        worker's that _recover_stale found: both are written through the storage by id."""
        attrs = {"fail_reason": reason}
        if self._same_failure_so_far(study, trial, reason):
            # Every trial of this run so far failed this one way: a config or environment error
            # (a data file that is not there), not a result. It spends none of the budget, so
            # the same command after the fix still runs all of n_trials; _check_failures stops
            # the run once n_jobs + 2 have failed so.
            attrs.update({budget.NOT_COUNTED: True, budget.SAME_FAILURE: True})
        for key, value in attrs.items():
            study._storage.set_trial_user_attr(trial._trial_id, key, value)
        self._tell(study, trial.number, TrialState.FAIL, None)
        log.warning("trial %d failed: %s", trial.number, reason)

    def _same_failure_so_far(self, study, trial, reason: str) -> bool:
        # Not in a grid, whose points are its budget: a point that fails stays failed.
        if self._grid is not None or trial.number < self._first_number:
            return False
        fails = self._opening_failures([t for t in study.get_trials(deepcopy=False)
                                        if t.number >= self._first_number and t.number != trial.number])
        return fails is not None and all(t.user_attrs.get("fail_reason") == reason for t in fails)

    def _opening_failures(self, trials) -> list | None:
        """The failures of `trials` (this run's) while none of them has finished, counted or
        not; None once one has, or when the sweep runs on regardless (max_failure_rate=1:
        only counted failures end it)."""
        if self.max_failure_rate >= 1:
            return None
        if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
            return None
        return budget.failed(trials, same=True)

    @staticmethod
    def _was_requeued(study, trial) -> bool:
        return bool(study._storage.get_trial(trial._trial_id).user_attrs.get(budget.NOT_COUNTED))

    @staticmethod
    def _tell(study, trial, state, values) -> None:
        try:
            study.tell(trial, state=state, values=values)
        except RuntimeError as e:
            if "Study.stop" not in str(e):  # GridSampler stops the study when the grid is done
                raise

    def _check_failures(self, study: optuna.Study, total: int) -> None:
        trials = study.get_trials(deepcopy=False)
        fails = budget.failed(trials)
        reason = self._repeated_failure([t for t in trials if t.number >= self._first_number])
        if reason is not None:
            raise CharmlpError(
                f"sweep stopped: this run's first trials all failed the same way and none finished "
                f"({reason}); fix: that cause, then rerun the same command (the failed trials stay "
                "in the study and spend none of n_trials; hydra.sweeper.max_failure_rate=1 runs "
                "on regardless)")
        if len(fails) > self.max_failure_rate * total:
            raise CharmlpError(
                f"sweep stopped: {len(fails)} of {total} trials failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} allows (last: "
                f"{fails[-1].user_attrs.get('fail_reason', '?')}); fix: see fail_reason in "
                f"{self.sweep_dir / RESULTS_CSV}, fix the cause, then resume with a higher "
                "hydra.sweeper.max_failure_rate= (failed trials stay in the study)")

    def _repeated_failure(self, trials) -> str | None:
        """The one reason every failed trial of `trials` gave, once n_jobs + 2 have failed and
        none has finished: an error every trial will hit (a config or environment error),
        which would otherwise burn max_failure_rate x n_trials trials before the sweep stops."""
        fails = self._opening_failures(trials)
        if fails is None or len(fails) < self.n_jobs + 2:
            return None
        reasons = {t.user_attrs.get("fail_reason") for t in fails}
        return reasons.pop() if len(reasons) == 1 and None not in reasons else None

    # ---- outputs ------------------------------------------------------------------------
    def _write_results(self) -> None:
        try:
            write_outputs(collect(str(self.sweep_dir)), self.sweep_dir)
        except Exception as e:  # a results table must never take a sweep down
            log.warning("could not write results.csv: %s", e)

    def _write_best(self, study: optuna.Study) -> None:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not done:
            return
        if len(study.directions) > 1:
            solutions = [{"params": t.params, "values": t.values} for t in study.best_trials]
            result = {"name": "optuna", "solutions": solutions}
        else:
            best = study.best_trial
            result = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        OmegaConf.save(OmegaConf.create(result), self.sweep_dir / "optimization_results.yaml")


def _ran_to_its_end(job: Job) -> bool:
    """The job returned a result or was pruned: not cut short, so its trial is recorded."""
    return job.error is None and (job.result.status == JobStatus.COMPLETED
                                  or isinstance(job.result._return_value, optuna.TrialPruned))


def _is_grid(sampler) -> bool:
    """A GridSampler still waiting for its search space (Hydra instantiates it partially)."""
    return isinstance(sampler, functools.partial) and sampler.func == optuna.samplers.GridSampler


def _inherit_grid_id(study: optuna.Study, trial: optuna.Trial) -> None:
    """A retried grid point keeps its grid id: GridSampler gives enqueued trials none, and
    then fails (KeyError 'grid_id') when told about them near the end of the grid."""
    retry_of = trial.user_attrs.get("retry_of")
    if retry_of is None or not isinstance(study.sampler, optuna.samplers.GridSampler):
        return
    storage = study._storage
    original = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, retry_of))
    if "grid_id" in original.system_attrs:
        for key in ("grid_id", "search_space"):
            storage.set_trial_system_attr(trial._trial_id, key, original.system_attrs[key])


def _known_numbers(storage, study_name: str | None) -> set[int]:
    """Trial numbers of the named study, or none when it does not exist yet."""
    if study_name is None:
        return set()
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return set()
    return {t.number for t in study.get_trials(deepcopy=False)}


def _first_line(err) -> str:
    return str(err).splitlines()[0] if str(err) else "no detail"


def _one_line(err, limit: int = 400) -> str:
    """The whole message on one line (a Slurm job's end state is on its second line)."""
    text = " ".join(str(err).split()) or "no detail"
    return text if len(text) <= limit else text[:limit] + "..."

