"""Engine registry. `auto` picks the fastest engine that supports the config."""
import importlib
import logging

import torch

from ..errors import CharmlpError
from .base import Engine

log = logging.getLogger(__name__)

# name -> "module:Class", fastest first; imported lazily so a broken native build
# never stops the portable engines from loading.
ENGINES = {
    "native": "charmlp.engines.native:NativeEngine",
    "torch": "charmlp.engines.manual:ManualEngine",
    "reference": "charmlp.engines.reference:ReferenceEngine",
}


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise CharmlpError(f"trainer.engine={name!r} is unknown; choose one of auto, {', '.join(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def select_engine(name: str, model, optimizer, device: torch.device) -> type[Engine]:
    """The engine class to use: `name` itself, or for `auto` the first that supports the config."""
    candidates = list(ENGINES) if name == "auto" else [name]
    reasons = []
    for cand in candidates:
        try:
            cls = engine_class(cand)
        except (ImportError, OSError, RuntimeError) as e:  # e.g. native build failed
            reasons.append(f"{cand}: {e}")
            continue
        why = cls.unsupported(model, optimizer, device)
        if why is None:
            if reasons:
                log.info("engine %s (skipped: %s)", cand, "; ".join(reasons))
            return cls
        reasons.append(f"{cand}: {why}")
    raise CharmlpError(f"no engine can train this config ({'; '.join(reasons)}); "
                       "fix: choose another trainer.engine=")


def split_loss(model, X: torch.Tensor, Y: torch.Tensor) -> float:
    """Full-split loss in evaluation mode, by the native C forward where it applies (the same
    value to ~1e-7, about 10x faster), else by charmlp.evaluate's torch forward."""
    from .. import evaluate
    try:
        from .native import split_loss as native_split_loss
    except (ImportError, OSError):
        return evaluate.split_loss(model, X, Y)
    return native_split_loss(model, X, Y)
