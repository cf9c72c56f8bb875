"""Stand-in for hydra-optuna-sweeper's example/sphere.py (the sdist leaves it out): x^2 + y^2,
or an error when the config says `error=true` (the failure-rate test)."""
import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="config")
def sphere(cfg: DictConfig) -> float:
    if cfg.get("error", False):
        raise RuntimeError("cfg.error is True")
    return cfg.x ** 2 + cfg.y ** 2


if __name__ == "__main__":
    sphere()
