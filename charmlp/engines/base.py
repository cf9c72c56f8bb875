"""The one training-step interface. An engine owns the hot loop for a model it is given and
updates that model's parameters in place, so evaluation, checkpoints and sampling never
need to know which engine trained it."""
from abc import ABC, abstractmethod

import torch

from ..model import CharMLP
from ..optim import Optimizer


class Engine(ABC):
    name: str = "?"
    # Steps the trainer may hand run() at once, for an engine whose results are the same
    # however steps are grouped into calls; None: one history row per call.
    run_chunk: int | None = None

    def __init__(self, model: CharMLP, optimizer: Optimizer, X: torch.Tensor, Y: torch.Tensor,
                 batch_size: int, generator: torch.Generator, total_steps: int):
        self.model, self.optimizer = model, optimizer
        self.X, self.Y = X, Y
        self.batch_size, self.generator, self.total_steps = batch_size, generator, total_steps

    @classmethod
    def unsupported(cls, model: CharMLP, optimizer: Optimizer, device: torch.device) -> str | None:
        """Why this engine cannot train this config, or None when it can."""
        return None

    def batch_indices(self, n: int) -> torch.Tensor:
        """Indices for n steps, (n, B). One draw of n*B equals n draws of B from the same
        generator, so every engine sees the reference's batches."""
        ix = torch.randint(0, self.X.shape[0], (n * self.batch_size,), generator=self.generator)
        return ix.view(n, self.batch_size)

    @abstractmethod
    def run(self, start: int, n: int) -> torch.Tensor:
        """Train steps start .. start+n-1; return their batch losses, shape (n,)."""
