"""CharmlpSweeperImpl: the official Optuna sweeper's parts (search-space parsing, trial
configuration, launcher) driven by a loop that resumes, shares a total budget between
workers, names trial directories by trial number, and records every trial's metrics."""
import functools
import logging
import math
import signal
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf

from ..atomic import write_json
from ..errors import CharmlpError
from ..results import collect, write_outputs
from ..rundir import METRIC_KEYS, finite, read_metrics, task_overrides, trial_dirname
from . import budget
from .liveness import Heartbeat, claim, is_stale
from .storage import default_url, open_storage, redact

log = logging.getLogger(__name__)


class SweepInterrupted(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the running batch is recorded before exit."""


class CharmlpSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *args: Any, heartbeat_interval: float, grace_period: float) -> None:
        super().__init__(*args)
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period

    # ---- set-up -------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        space, fixed, fixed_overrides = self._search_space(arguments)
        study, total = self._open_study(space)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)  # after both: bad input makes no dir
        self._check_dirs(study)  # before study.json: a refused sweep must not repoint the dir
        write_json(self.sweep_dir / "study.json", {"storage": self.storage, "study_name": study.study_name})
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._loop(study, total, space, fixed, fixed_overrides)
        finally:
            signal.signal(signal.SIGTERM, previous)
            self._write_results()
        self._write_best(study)

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
        if isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler:
            grid = {k: self._to_grid_sampler_choices(d) for k, d in space.items()}
            self.sampler = self.sampler(grid)
            total = min(total, math.prod(len(v) for v in grid.values()))
        self.storage = self.storage or default_url(self.sweep_dir)
        study = optuna.create_study(
            study_name=self.study_name, storage=open_storage(self.storage), sampler=self.sampler,
            directions=self._get_directions(), load_if_exists=True)
        log.info("study %s in %s: %d trials already, budget %d", study.study_name, redact(self.storage),
                 len(study.trials), total)
        return study, total

    def _check_dirs(self, study: optuna.Study) -> None:
        """Trial dirs the study doesn't know mean another study wrote here: never overwrite."""
        known = {t.number for t in study.get_trials(deepcopy=False)}
        strangers = sorted(p.name for p in self.sweep_dir.glob("trial_*")
                           if p.name[6:].isdigit() and int(p.name[6:]) not in known)
        if strangers:
            raise CharmlpError(
                f"{self.sweep_dir} holds {strangers[0]} and {len(strangers) - 1} more trial dirs that "
                f"study {study.study_name!r} in {self.storage} does not know; fix: use the original "
                "hydra.sweeper.storage, or a new hydra.sweep.dir / study_name")

    # ---- the loop -----------------------------------------------------------------------
    def _loop(self, study, total, space, fixed, fixed_overrides) -> None:
        while True:
            self._recover_stale(study)
            # Before asking: a resumed study already past the limit stops without new trials.
            self._check_failures(study, total)
            trials = self._ask(study, total)
            if not trials:
                return
            overrides = [tuple(o) + (f"hydra.sweep.subdir={trial_dirname(t.number)}",)
                         for t, o in zip(trials, self._configure_trials(trials, space, fixed, fixed_overrides))]
            trials, overrides = self._composable(study, trials, overrides)
            if not trials:
                continue
            try:
                with Heartbeat(study._storage, [t._trial_id for t in trials], self.heartbeat_interval):
                    returns = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            except BaseException:
                for t in trials:
                    self._retry(study, t, "interrupted: the sweep was stopped while it ran")
                raise
            for t, ov, ret in zip(trials, overrides, returns):
                self._record(study, t, ov, ret)
            self._write_results()

    def _composable(self, study, trials, overrides):
        """Trials whose config composes. One that doesn't (e.g. choice(mlp, nope) over a config
        group) fails here with the reason; inside the launcher it would abort the whole batch,
        and its retry would abort the next run the same way."""
        keep = []
        for t, ov in zip(trials, overrides):
            try:
                self.hydra_context.config_loader.load_sweep_config(self.config, list(ov))
            except Exception as e:
                reason = f"config error: {' '.join(str(e).split('Config search path')[0].split())}"
                t.set_user_attr("overrides", task_overrides(ov))
                t.set_user_attr("fail_reason", reason)
                self._tell(study, t, optuna.trial.TrialState.FAIL, None)
                log.warning("trial %d failed: %s", t.number, reason)
            else:
                keep.append((t, ov))
        return [t for t, _ in keep], [ov for _, ov in keep]

    def _ask(self, study: optuna.Study, total: int) -> list[optuna.Trial]:
        trials = []
        free = total - budget.used(study.get_trials(deepcopy=False))
        for _ in range(min(self.n_jobs, free)):
            t = study.ask()
            if not budget.within_budget(study.get_trials(deepcopy=False), t.number, total):
                budget.fail_uncounted(study, t._trial_id, "over budget: other workers took the last trials")
                break
            claim(t)
            trials.append(t)
        return trials

    def _recover_stale(self, study: optuna.Study) -> None:
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if is_stale(t, self.grace_period):
                self._retry(study, t, "interrupted: its worker died")

    def _retry(self, study: optuna.Study, t, reason: str) -> None:
        """Fail an interrupted trial without spending budget, and queue its params again."""
        if budget.fail_uncounted(study, t._trial_id, reason):
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
            log.warning("trial %d %s; queued again", t.number, reason)

    def _record(self, study: optuna.Study, trial: optuna.Trial, overrides, ret) -> None:
        out = self.sweep_dir / trial_dirname(trial.number)
        trial.set_user_attr("output_dir", str(out))
        trial.set_user_attr("overrides", task_overrides(overrides))
        metrics, _ = read_metrics(out)
        for key in METRIC_KEYS:
            if isinstance(metrics.get(key), (int, float)):
                trial.set_user_attr(key, metrics[key])
        if ret.status == JobStatus.COMPLETED:
            value = finite(ret._return_value)
            if value is not None:
                self._tell(study, trial, optuna.trial.TrialState.COMPLETE, [value])
                return
            reason = f"objective returned {ret._return_value!r}, not a finite number"
        else:
            err = ret._return_value
            reason = f"{type(err).__name__}: {err}".splitlines()[0]
        trial.set_user_attr("fail_reason", reason)
        self._tell(study, trial, optuna.trial.TrialState.FAIL, None)
        log.warning("trial %d failed: %s", trial.number, reason)

    @staticmethod
    def _tell(study, trial, state, values) -> None:
        try:
            study.tell(trial, state=state, values=values)
        except RuntimeError as e:
            if "Study.stop" not in str(e):  # GridSampler stops the study when the grid is done
                raise

    def _check_failures(self, study: optuna.Study, total: int) -> None:
        fails = budget.failed(study.get_trials(deepcopy=False))
        if len(fails) > self.max_failure_rate * total:
            raise CharmlpError(
                f"sweep stopped: {len(fails)} of {total} trials failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} allows (last: "
                f"{fails[-1].user_attrs.get('fail_reason', '?')}); fix: see fail_reason in "
                f"{self.sweep_dir / 'results.csv'}, fix the cause, then resume with a higher "
                "hydra.sweeper.max_failure_rate= (failed trials stay in the study)")

    # ---- outputs ------------------------------------------------------------------------
    def _write_results(self) -> None:
        try:
            write_outputs(collect(str(self.sweep_dir)), self.sweep_dir)
        except Exception as e:  # a results table must never take a sweep down
            log.warning("could not write results.csv: %s", e)

    def _write_best(self, study: optuna.Study) -> None:
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not done or len(self._get_directions()) > 1:
            return
        best = study.best_trial
        log.info("best trial %d: value %.4f, params %s", best.number, best.value, best.params)
        OmegaConf.save(OmegaConf.create({"name": "optuna", "best_params": best.params,
                                         "best_value": best.value}),
                       self.sweep_dir / "optimization_results.yaml")


def _raise_interrupt(signum, frame):
    raise SweepInterrupted(signal.Signals(signum).name)
