"""charmlp-train: one training run (or a Hydra multirun) composed from conf/."""
import logging
import math
import re
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .configs import conf_dir
from .errors import CharmlpError
from .rundir import LOG
from .sweep.reporting import TrialAbandoned, TrialReporter
from .trainer import train

log = logging.getLogger(__name__)
CONF_DIR = conf_dir()


# What optimized_metric may name: the numbers a finished run reports about its model and its
# training. Checked before training, so that a typo does not cost every trial a whole run.
OBJECTIVES = ("dev_loss", "best_dev_loss", "train_loss", "test_loss", "init_loss", "num_params",
              "steps_per_sec", "wall_time")


def check_objective(key, report_test: bool, sweeping: bool) -> None:
    for k in [key] if isinstance(key, str) else list(key):
        if k not in OBJECTIVES:
            raise CharmlpError(f"optimized_metric={k!r} is not a metric of a run; choose one of "
                               f"{', '.join(OBJECTIVES)}")
        if k == "test_loss" and sweeping:
            raise CharmlpError("optimized_metric=test_loss: the test split is for the final report "
                               "on a chosen config, never for selection; fix: optimized_metric=dev_loss")
        if k == "test_loss" and not report_test:
            raise CharmlpError("optimized_metric=test_loss needs report_test=true")


def objective(metrics: dict, key) -> float | list[float]:
    """The metric named by optimized_metric; a list of names gives a list (multi-objective)."""
    if not isinstance(key, str):
        return [objective(metrics, k) for k in key]
    if key not in metrics:
        raise CharmlpError(f"optimized_metric={key!r} is not a metric of this run; "
                           f"choose one of {sorted(k for k, v in metrics.items() if isinstance(v, float))}")
    return float(metrics[key])


def main() -> None:
    """charmlp-train's console entry: `+sweep=NAME` means a sweep, with or without -m."""
    sys.argv[1:] = with_multirun(sys.argv[1:])
    run()


def with_multirun(args: list[str]) -> list[str]:
    """Add -m when a sweep preset is chosen and the user asked for no other mode. (The presets
    also say hydra.mode: MULTIRUN, but Hydra honours that only in a primary config.)"""
    other_modes = {"-m", "--multirun", "-r", "--run", "-c", "--cfg", "-i", "--info", "-h", "--help",
                   "--hydra-help", "-sc", "--shell-completion"}
    if any(re.match(r"\+{0,2}sweep=", a) for a in args) and not other_modes.intersection(args):
        return ["-m", *args]
    return args


@hydra.main(config_path=CONF_DIR, config_name="train")
def run(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    reporter = None
    if hc.mode == RunMode.MULTIRUN:
        label_log_lines(f"trial {hc.job.num}")
        reporter = TrialReporter.from_hydra()
    try:
        check_objective(cfg.optimized_metric, bool(cfg.get("report_test")), hc.mode == RunMode.MULTIRUN)
        metrics = train(cfg, hc.runtime.output_dir, on_eval=reporter.report if reporter else None)
        return objective(metrics, cfg.optimized_metric)
    except TrialAbandoned as e:  # the study has this trial already: nobody reads this result
        log.warning("%s", e)
        return math.nan
    except CharmlpError as e:
        if hc.mode == RunMode.MULTIRUN:
            raise  # the sweeper records the trial as failed, with this message
        log.error("%s%s", e, remove_if_empty(Path(hc.runtime.output_dir)))
        sys.exit(2)


def remove_if_empty(run_dir: Path) -> str:
    """A run that failed before training holds only what Hydra wrote (.hydra/, train.log):
    remove it, so failed attempts leave no run dirs behind. Returns the note for the error."""
    if not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} - {".hydra", LOG}:
        return ""
    shutil.rmtree(run_dir, ignore_errors=True)
    return f" (nothing was trained: removed its run dir {run_dir})"


def label_log_lines(label: str) -> None:
    """Prefix this job's log lines with its trial, so parallel trials' lines can be told apart."""
    def add_label(record: logging.LogRecord) -> bool:
        # The sweep's own lines name their trials (and with hydra/launcher=basic they pass the
        # job's handlers too): only the job's lines are labelled.
        sweep = record.name.startswith("charmlp.sweep.") and record.name != "charmlp.sweep.reporting"
        if not sweep and not getattr(record, "trial_label", None):  # once, whatever the handlers
            record.trial_label, record.msg = label, f"{label} | {record.msg}"
        return True
    for handler in logging.getLogger().handlers:  # Hydra sets these up afresh for each job
        handler.addFilter(add_label)


if __name__ == "__main__":
    main()
