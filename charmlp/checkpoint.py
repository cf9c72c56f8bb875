"""A checkpoint is one dict: weights, model args, vocabulary, step, metrics and config;
enough to evaluate or sample without the original command line."""
import pickle
from dataclasses import asdict
from pathlib import Path

import torch

from .atomic import atomic_path
from .data import Vocab
from .errors import CharmlpError
from .model import CharMLP, ModelArgs

CHECKPOINT = "model.pt"


def save_checkpoint(path: Path, model: CharMLP, vocab: Vocab, step: int, metrics: dict,
                    config: dict) -> None:
    ckpt = {"model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "model_args": asdict(model.args), "vocab": vocab.chars, "step": step,
            "metrics": metrics, "config": config}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: str | Path) -> tuple[CharMLP, Vocab, dict]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CharmlpError(f"no checkpoint at {path}; fix: pass a run directory that holds {CHECKPOINT}")
    # An empty, truncated or foreign file fails in torch.load (EOFError, UnpicklingError,
    # RuntimeError from the zip reader) or in the keys and shapes below.
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = CharMLP(ModelArgs(**ckpt["model_args"]))
        model.load_state_dict(ckpt["model_state"])
        vocab = Vocab(ckpt["vocab"])
    except (EOFError, pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError,
            IndexError) as e:
        raise CharmlpError(f"{path} is not a readable charmlp checkpoint ({type(e).__name__}); fix: "
                           f"rerun it (charmlp-rerun {path.parent}) for a new checkpoint") from None
    return model.eval(), vocab, ckpt
