"""A Hydra app that knows nothing of charmlp: tests/test_plugin.py runs it with
hydra/sweeper=charmlp to check that installing charmlp is all such an app needs."""
import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return (cfg.x - 2.0) ** 2 + cfg.y


if __name__ == "__main__":
    main()
