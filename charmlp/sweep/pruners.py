"""The study's pruner from `hydra.sweeper.pruner`, built the same way by the sweep and by every
trial's reporter (which asks it whether to stop)."""
import importlib
import inspect
import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("charmlp.sweep")
PRUNERS = ("optuna.pruners.*",)


def make_pruner(cfg: DictConfig, warn: bool = True) -> Any:
    """The configured optuna pruner. A preset's arguments for its own pruner (the wide preset's
    min_resource) do not fit another one chosen on the command line (hydra/sweeper/pruner=none):
    those are dropped, with a warning from the sweep, instead of failing every trial."""
    from hydra.utils import instantiate
    unused = _unknown_args(cfg)
    if unused:
        if warn:
            log.warning("hydra.sweeper.pruner: %s takes no %s; ignored", cfg._target_, ", ".join(unused))
        cfg = OmegaConf.create({k: v for k, v in cfg.items_ex(resolve=False) if k not in unused})
    return instantiate(cfg, _execution_whitelist_=PRUNERS)


def _unknown_args(cfg: DictConfig) -> list[str]:
    target = cfg.get("_target_")
    if not isinstance(target, str) or not target.startswith("optuna.pruners."):
        return []  # instantiate judges (and refuses) anything else
    module, _, name = target.rpartition(".")
    params = inspect.signature(getattr(importlib.import_module(module), name, None) or object).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return []
    return [k for k in cfg if not str(k).startswith("_") and k not in params]
