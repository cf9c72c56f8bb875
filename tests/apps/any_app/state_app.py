"""A Hydra app whose jobs leave something in Hydra's global state (a ConfigStore entry) and
report what earlier jobs left, which process they ran in, and whether its garbage collector
skips what the imports made. tests/test_plugin.py runs it on one parallel slot: every job
must start from the sweep's own state, as upstream's joblib jobs do."""
import gc
import json
import os

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    store = ConfigStore.instance()
    left = sorted(k for k in store.repo if k.startswith("left_by_job"))
    store.store(name=f"left_by_job_{HydraConfig.get().job.num}", node={"x": cfg.x})
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "job.json"), "w") as f:
        json.dump({"pid": os.getpid(), "left": left, "frozen": gc.get_freeze_count()}, f)
    if cfg.get("forget_payload"):  # as a worker that never received it would be
        from charmlp.sweep import launcher
        launcher._PAYLOADS.clear()
    return (cfg.x - 2.0) ** 2


if __name__ == "__main__":
    main()
