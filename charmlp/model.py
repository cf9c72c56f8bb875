"""The makemore MLP: embedding -> Linear -> BatchNorm (optional) -> tanh -> Linear, plus
optional Bengio et al. (2003) direct connections from the embeddings to the logits."""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CharmlpError, require, require_positive, require_types


@dataclass
class ModelArgs:
    vocab_size: int = 27
    block_size: int = 3
    n_embd: int = 10
    n_hidden: int = 200
    batchnorm: bool = True
    direct: bool = False          # Bengio 2003 skip matrix, embeddings -> logits
    bn_momentum: float = 0.001
    init: str = "kaiming"         # kaiming | zero (zero shows that symmetry is never broken)

    def __post_init__(self):
        require_types("model.", self)
        require_positive("model.", vocab_size=self.vocab_size, block_size=self.block_size,
                         n_embd=self.n_embd, n_hidden=self.n_hidden)
        # 0 freezes the running stats, 1 keeps the last batch's; outside that they diverge
        require(0 <= self.bn_momentum <= 1, "model.bn_momentum", self.bn_momentum, "in [0, 1]")
        if self.init not in ("kaiming", "zero"):
            raise CharmlpError(f"model.init={self.init!r} is unknown; use kaiming or zero")

    @property
    def fan_in(self) -> int:
        return self.n_embd * self.block_size


class CharMLP(nn.Module):
    """forward(idx, targets=None) -> (logits, loss), as every makemore model."""

    def __init__(self, args: ModelArgs, generator: torch.Generator | None = None):
        super().__init__()
        self.args = args
        a, g = args, generator
        V, E, H, F_in = a.vocab_size, a.n_embd, a.n_hidden, a.fan_in
        # Draw order matches the reference notebook so one seed gives the same weights.
        self.C = nn.Parameter(torch.randn((V, E), generator=g))
        self.W1 = nn.Parameter(torch.randn((F_in, H), generator=g) * (5 / 3) / F_in**0.5)
        self.b1 = None if a.batchnorm else nn.Parameter(torch.randn(H, generator=g) * 0.01)
        self.W2 = nn.Parameter(torch.randn((H, V), generator=g) * 0.01)
        self.b2 = nn.Parameter(torch.randn(V, generator=g) * 0)
        self.D = nn.Parameter(torch.randn((F_in, V), generator=g) * 0.01) if a.direct else None
        if a.batchnorm:
            self.bngain = nn.Parameter(torch.ones(H))
            self.bnbias = nn.Parameter(torch.zeros(H))
            self.register_buffer("bnmean_running", torch.zeros(H))
            self.register_buffer("bnstd_running", torch.ones(H))
        if a.init == "zero":
            with torch.no_grad():
                for p in (self.W1, self.b1, self.W2, self.b2):
                    if p is not None:
                        p.zero_()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.C[idx].view(idx.shape[0], -1)  # (B, T*E)
        hpre = x @ self.W1 if self.b1 is None else x @ self.W1 + self.b1
        if self.args.batchnorm:
            if self.training:
                mean, std = hpre.mean(0), hpre.std(0)  # unbiased std, no eps: as the reference
                with torch.no_grad():
                    m = self.args.bn_momentum
                    self.bnmean_running.mul_(1 - m).add_(m * mean)
                    self.bnstd_running.mul_(1 - m).add_(m * std)
            else:
                mean, std = self.bnmean_running, self.bnstd_running
            hpre = self.bngain * (hpre - mean) / std + self.bnbias
        logits = torch.tanh(hpre) @ self.W2 + self.b2  # (B, V)
        if self.D is not None:
            logits = logits + x @ self.D
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(vocab_size: int, block_size: int, generator: torch.Generator | None = None,
                **kwargs) -> CharMLP:
    """Hydra target for conf/model: vocab and context come from the data, sizes from config."""
    return CharMLP(ModelArgs(vocab_size=vocab_size, block_size=block_size, **kwargs), generator)


@torch.no_grad()
def fold_batchnorm(model: CharMLP) -> CharMLP:
    """An inference copy with eval-mode BatchNorm folded into the first Linear layer."""
    if not model.args.batchnorm:
        return model
    args = ModelArgs(**{**asdict(model.args), "batchnorm": False})
    folded = CharMLP(args)
    scale = model.bngain / model.bnstd_running  # (H,)
    folded.C.copy_(model.C)
    folded.W1.copy_(model.W1 * scale)
    folded.b1.copy_(model.bnbias - model.bnmean_running * scale)
    folded.W2.copy_(model.W2)
    folded.b2.copy_(model.b2)
    if model.D is not None:
        folded.D.copy_(model.D)
    return folded.eval()


def uniform_loss(vocab_size: int) -> float:
    return math.log(vocab_size)
