"""The trial's side of pruning. Inside a charmlp sweep every job knows its Optuna trial: the
study's storage and name are in study.json in its sweep dir, its trial number is
hydra.job.num, and the pruner is in its Hydra config (hydra.sweeper.pruner). `TrialReporter.from_hydra()` opens that trial in the job's own process (any
launcher: joblib worker, Slurm task, or the sweep process itself) so the job can report each
evaluation and stop when the study's pruner says so. Any Hydra app can use it:

    reporter = TrialReporter.from_hydra()          # None outside a charmlp sweep
    ...
    if reporter: reporter.report(step, dev_loss)   # raises TrialPruned when pruned
"""
import logging
from pathlib import Path
from typing import Any

import optuna

from ..errors import RunStopped
from ..rundir import read_study_json
from .interrupts import shield

log = logging.getLogger(__name__)


class TrialPruned(RunStopped, optuna.TrialPruned):
    """Pruned by the study's pruner: the trainer keeps what it has, the sweeper records PRUNED."""
    status = "pruned"


class TrialAbandoned(RunStopped):
    """The study already holds this trial as finished: the sweep that started it was stopped
    and a resume queued it again (a Slurm job outliving its driver, say). Training on is
    work nobody will read, so the job stops and keeps what it has."""
    status = "abandoned"


class TrialReporter:
    def __init__(self, storage_url: str, study_name: str, number: int, pruner_cfg: Any):
        self.storage_url, self.study_name, self.number = storage_url, study_name, number
        self.pruner_cfg = pruner_cfg
        self._trial: optuna.Trial | None = None
        self.multi_objective = False

    @classmethod
    def from_hydra(cls) -> "TrialReporter | None":
        """The reporter of the current Hydra job, or None when it is not a charmlp sweep trial."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        if not HydraConfig.initialized():
            return None
        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN or "pruner" not in hc.sweeper:
            return None
        # The trial's run dir is <sweep dir>/<subdir>, absolute on any launcher.
        found = read_study_json(Path(hc.runtime.output_dir).parent)
        if found is None:
            return None
        return cls(found[0], str(found[1]), int(hc.job.num), hc.sweeper.pruner)

    def trial(self) -> optuna.Trial:
        """The job's own trial, opened on first use (the storage connection costs ~0.1 s)."""
        if self._trial is None:
            from .pruners import make_pruner
            from .storage import open_storage
            pruner = make_pruner(self.pruner_cfg, warn=False) if self.pruner_cfg else optuna.pruners.NopPruner()
            # A RandomSampler: Trial() asks the sampler for relative params, which TPE would compute.
            study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage_url),
                                      sampler=optuna.samplers.RandomSampler(), pruner=pruner)
            self.multi_objective = len(study.directions) > 1
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
            self._trial = optuna.Trial(study, trial_id)
        return self._trial

    def report(self, step: int, value: float) -> None:
        """Record `value` at `step` on the trial; raise TrialPruned if the pruner says stop."""
        with shield():  # in the sweep process (basic launcher), a stop waits for the storage
            trial = self.trial()
            if self.multi_objective:  # Optuna prunes single-objective studies only
                return
            try:
                trial.report(value, step)
            except optuna.exceptions.UpdateFinishedTrialError:
                raise TrialAbandoned(f"trial {self.number} was already finished in the study (its "
                                     "sweep was stopped and the resume queued it again): stopped "
                                     f"at step {step}") from None
            prune = trial.should_prune()
        if prune:
            raise TrialPruned(f"pruned at step {step}: dev loss {value:.4f}")
