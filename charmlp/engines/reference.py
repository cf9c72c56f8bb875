"""The reference notebook's loop: eager autograd, one batch draw per step. Kept for checking."""
import torch

from .base import Engine


class ReferenceEngine(Engine):
    name = "reference"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.torch_opt = self.optimizer.make_torch(self.model)

    def run(self, start: int, n: int) -> torch.Tensor:
        model, opt = self.model.train(), self.torch_opt
        losses = torch.empty(n)
        for i in range(n):
            ix = torch.randint(0, self.X.shape[0], (self.batch_size,), generator=self.generator)
            _, loss = model(self.X[ix], self.Y[ix])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr = self.optimizer.lr_at(start + i, self.total_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            losses[i] = loss.detach()
        return losses
