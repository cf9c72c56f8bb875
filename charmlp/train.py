"""charmlp-train: one training run (or a Hydra multirun) composed from conf/."""
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .errors import CharmlpError
from .trainer import train

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def objective(metrics: dict, key: str) -> float:
    if key not in metrics:
        raise CharmlpError(f"optimized_metric={key!r} is not a metric of this run; "
                           f"choose one of {sorted(k for k, v in metrics.items() if isinstance(v, float))}")
    return float(metrics[key])


@hydra.main(config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    try:
        metrics = train(cfg, hc.runtime.output_dir)
        return objective(metrics, cfg.optimized_metric)
    except CharmlpError as e:
        if hc.mode == RunMode.MULTIRUN:
            raise  # the sweeper records the trial as failed, with this message
        log.error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    main()
