"""Optimizer and learning-rate schedule specs. Engines read these plain fields, so a native
or hand-written engine implements exactly what the reference engine gets from torch.optim."""
import math
from dataclasses import dataclass

import torch

from .errors import require, require_types

PREFIX = "optimizer.schedule."


@dataclass
class Schedule:
    """Multiplier on the base lr as a function of step; subclasses define `factor`."""
    warmup: float = 0.0  # fraction of steps with a linear ramp from 0

    def __post_init__(self):
        require_types(PREFIX, self)
        require(0 <= self.warmup <= 1, PREFIX + "warmup", self.warmup,
                "a fraction of the steps, in [0, 1]")

    def factor(self, step: int, total: int) -> float:
        raise NotImplementedError

    def __call__(self, step: int, total: int, lr: float) -> float:
        w = int(self.warmup * total)
        ramp = (step + 1) / w if step < w else 1.0
        return lr * ramp * self.factor(step, total)

    def cuts(self, total: int) -> list[int] | None:
        """The steps where a piecewise-constant factor changes; None: it may change at every
        step."""
        return None

    def block(self, start: int, n: int, total: int, lr: float) -> torch.Tensor:
        """The lr of steps start .. start+n-1 as float64, exactly as n calls give them: one
        call per piece where the factor is piecewise constant past warmup (the same
        expression, so the same floats), else one per step."""
        cuts = self.cuts(total)
        if cuts is None or start < int(self.warmup * total):
            return torch.tensor([self(s, total, lr) for s in range(start, start + n)], dtype=torch.float64)
        bounds = [start] + sorted(c for c in cuts if start < c < start + n) + [start + n]
        pieces = [torch.full((b - a,), self(a, total, lr), dtype=torch.float64)
                  for a, b in zip(bounds, bounds[1:])]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


@dataclass
class Constant(Schedule):
    def factor(self, step, total):
        return 1.0

    def cuts(self, total):
        return []


@dataclass
class Step(Schedule):
    """The reference: lr for the first `at` fraction of steps, lr*`gamma` after."""
    at: float = 0.5
    gamma: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        require(0 <= self.at <= 1, PREFIX + "at", self.at, "a fraction of the steps, in [0, 1]")
        require(self.gamma > 0, PREFIX + "gamma", self.gamma,
                "positive (the lr after `at` is lr * gamma)")

    def factor(self, step, total):
        return 1.0 if step < int(self.at * total) else self.gamma

    def cuts(self, total):
        return [int(self.at * total)]


@dataclass
class Decay(Schedule):
    """A decay from lr to lr * min_ratio over the run."""
    min_ratio: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        require(0 <= self.min_ratio <= 1, PREFIX + "min_ratio", self.min_ratio,
                "in [0, 1] (the final lr is lr * min_ratio)")


@dataclass
class Cosine(Decay):

    def factor(self, step, total):
        t = step / max(1, total - 1)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class Linear(Decay):

    def factor(self, step, total):
        t = step / max(1, total - 1)
        return 1.0 - (1.0 - self.min_ratio) * t


@dataclass
class Optimizer:
    lr: float = 0.1
    weight_decay: float = 0.0  # applied to weight matrices only (C, W1, W2, D), not gains or biases
    schedule: Schedule = None

    def __post_init__(self):
        require_types("optimizer.", self)
        require(self.lr > 0, "optimizer.lr", self.lr, "positive")
        require(self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay, ">= 0 (0: none)")
        if self.schedule is None:
            self.schedule = Constant()
        require(isinstance(self.schedule, Schedule), "optimizer.schedule", self.schedule,
                "a schedule; fix: optimizer/schedule=step|cosine|linear|constant")

    def lr_at(self, step: int, total: int) -> float:
        return self.schedule(step, total, self.lr)

    def lr_block(self, start: int, n: int, total: int) -> torch.Tensor:
        """[lr_at(start), ..., lr_at(start + n - 1)] as a float64 tensor, without a Python
        call per step where the schedule is piecewise constant (the native engine's 1000-step
        calls: the list and its conversion were 0.3% of a step at emb10/hid200)."""
        return self.schedule.block(start, n, total, self.lr)

    def param_groups(self, model) -> list[dict]:
        decay = [p for n, p in model.named_parameters() if p.dim() == 2]
        rest = [p for n, p in model.named_parameters() if p.dim() != 2]
        return [{"params": decay, "weight_decay": self.weight_decay},
                {"params": rest, "weight_decay": 0.0}]

    def make_torch(self, model) -> torch.optim.Optimizer:
        raise NotImplementedError


@dataclass
class SGD(Optimizer):
    """Plain SGD as the reference (p -= lr * grad), with optional momentum."""
    momentum: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        require(0 <= self.momentum < 1, "optimizer.momentum", self.momentum, "in [0, 1) (0: none)")

    def make_torch(self, model):
        return torch.optim.SGD(self.param_groups(model), lr=self.lr, momentum=self.momentum,
                               foreach=False)


@dataclass
class AdamW(Optimizer):
    lr: float = 0.003
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        for key in ("beta1", "beta2"):
            require(0 <= getattr(self, key) < 1, f"optimizer.{key}", getattr(self, key), "in [0, 1)")
        require(self.eps >= 0, "optimizer.eps", self.eps, ">= 0")

    def make_torch(self, model):
        return torch.optim.AdamW(self.param_groups(model), lr=self.lr,
                                 betas=(self.beta1, self.beta2), eps=self.eps, foreach=False)
