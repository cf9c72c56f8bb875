"""Stand-in for the upstream example/custom-search-space-objective.py: a 4-D sphere whose z
is searched near x and whose w (not in the config, hence `+w`) is added by `configure`."""
import hydra
from omegaconf import DictConfig
from optuna.trial import Trial


@hydra.main(config_path="custom-search-space", config_name="config",
            execution_whitelist="__main__.configure")
def sphere4(cfg: DictConfig) -> float:
    return cfg.w ** 2 + cfg.x ** 2 + cfg.y ** 2 + cfg.z ** 2


def configure(cfg: DictConfig, trial: Trial) -> None:
    """Called by the sweeper for every trial, after the params from the config are suggested."""
    x, span = trial.params["x"], cfg.max_z_difference_from_x
    trial.suggest_float("z", x - span, x + span)
    trial.suggest_float("+w", 0.0, 1.0)


if __name__ == "__main__":
    sphere4()
