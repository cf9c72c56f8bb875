"""charmlp-train: one training run (or a Hydra multirun) composed from conf/."""
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .errors import CharmlpError
from .sweep.reporting import TrialReporter
from .trainer import train

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def objective(metrics: dict, key) -> float | list[float]:
    """The metric named by optimized_metric; a list of names gives a list (multi-objective)."""
    if not isinstance(key, str):
        return [objective(metrics, k) for k in key]
    if key not in metrics:
        raise CharmlpError(f"optimized_metric={key!r} is not a metric of this run; "
                           f"choose one of {sorted(k for k, v in metrics.items() if isinstance(v, float))}")
    return float(metrics[key])


@hydra.main(config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    reporter = None
    if hc.mode == RunMode.MULTIRUN:
        label_log_lines(f"trial {hc.job.num}")
        reporter = TrialReporter.from_hydra()
    try:
        metrics = train(cfg, hc.runtime.output_dir, on_eval=reporter.report if reporter else None)
        return objective(metrics, cfg.optimized_metric)
    except CharmlpError as e:
        if hc.mode == RunMode.MULTIRUN:
            raise  # the sweeper records the trial as failed, with this message
        log.error("%s", e)
        sys.exit(2)


def label_log_lines(label: str) -> None:
    """Prefix this job's log lines with its trial, so parallel trials' lines can be told apart."""
    def add_label(record: logging.LogRecord) -> bool:
        if not getattr(record, "trial_label", None):  # once, though it passes several handlers
            record.trial_label, record.msg = label, f"{label} | {record.msg}"
        return True
    for handler in logging.getLogger().handlers:  # Hydra sets these up afresh for each job
        handler.addFilter(add_label)


if __name__ == "__main__":
    main()
