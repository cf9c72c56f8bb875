"""Stand-in for the upstream example/multi-objective.py: the Binh and Korn problem, two
objectives to minimise together."""
import hydra
from omegaconf import DictConfig


@hydra.main(config_path="multi-objective-conf", config_name="config")
def binh_korn(cfg: DictConfig) -> tuple[float, float]:
    return 4 * cfg.x ** 2 + 4 * cfg.y ** 2, (cfg.x - 5) ** 2 + (cfg.y - 5) ** 2


if __name__ == "__main__":
    binh_korn()
