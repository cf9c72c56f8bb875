"""Hand-written forward and backward in plain torch: no autograd graph, preallocated buffers,
in-place ops, one batch draw per run() call. Same maths as the reference, so the same losses.

Parameters, gradients and optimizer state live in flat buffers (weight matrices first), so
each optimizer update is a handful of ops over all parameters instead of one loop per tensor.
run() copies the model into the flat buffer at the start and back at the end, so the model
stays the single source of truth between calls (checkpoints, evaluation, reloads)."""
import torch

from ..optim import AdamW, SGD
from .base import Engine

# Flat-buffer order: 2-D (weight-decayed) parameters first, so decay is one prefix slice.
MATRICES = ("C", "W1", "W2", "D")
VECTORS = ("b1", "b2", "bngain", "bnbias")


class FlatParams:
    """The model's parameters as views into one flat buffer, plus a twin buffer of grads."""

    def __init__(self, model):
        named = [(n, getattr(model, n, None)) for n in MATRICES + VECTORS]
        named = [(n, p) for n, p in named if p is not None]
        self.names = [n for n, _ in named]
        self.tensors = [p for _, p in named]
        sizes = [p.numel() for p in self.tensors]
        self.n_decay = sum(p.numel() for n, p in named if n in MATRICES)
        ref = self.tensors[0]
        self.flat = torch.empty(sum(sizes), dtype=ref.dtype, device=ref.device)
        self.grad = torch.zeros_like(self.flat)
        self.p, self.g = {}, {}
        offset = 0
        for (name, p), size in zip(named, sizes):
            self.p[name] = self.flat[offset:offset + size].view(p.shape)
            self.g[name] = self.grad[offset:offset + size].view(p.shape)
            offset += size

    def load(self):
        for name, t in zip(self.names, self.tensors):
            self.p[name].copy_(t.detach())

    def store(self):
        with torch.no_grad():
            for name, t in zip(self.names, self.tensors):
                t.copy_(self.p[name])


class ManualEngine(Engine):
    name = "torch"

    @classmethod
    def unsupported(cls, model, optimizer, device):
        if not isinstance(optimizer, (SGD, AdamW)):
            return f"optimizer {type(optimizer).__name__} has no hand-written update"
        if model.C.dtype not in (torch.float32, torch.float64):
            return f"dtype {model.C.dtype} is not float32/float64"
        return None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        m = self.model
        a, B = m.args, self.batch_size
        V, E, T, H = a.vocab_size, a.n_embd, a.block_size, a.n_hidden
        F_in = T * E
        self.fp = FlatParams(m)
        dev, dt = self.fp.flat.device, self.fp.flat.dtype
        new = lambda *shape: torch.empty(shape, device=dev, dtype=dt)  # noqa: E731
        self.x, self.hpre, self.xhat, self.h = new(B, F_in), new(B, H), new(B, H), new(B, H)
        self.tmp, self.dh, self.dx = new(B, H), new(B, H), new(B, F_in)
        self.logits, self.dlog, self.k = new(B, V), new(B, V), new(H)
        self.minus_ones = torch.full((B, 1), -1.0, device=dev, dtype=dt)
        # Constant factors as 1-element tensors: a Python-scalar multiplier costs a dtype
        # conversion per call on CPU, a broadcast tensor does not.
        self.inv_b = torch.full((1,), 1.0 / B, device=dev, dtype=dt)
        # Column means as (1, B) @ (B, H): one matmul instead of a sum and a scale.
        self.mean_row = torch.full((1, B), 1.0 / B, device=dev, dtype=dt)
        self.var_row = torch.full((1, B), 1.0 / max(B - 1, 1), device=dev, dtype=dt)
        self.one, self.two = (torch.full((1,), v, device=dev, dtype=dt) for v in (1.0, 2.0))
        self.tanh_into = self.tanh_by_sigmoid if dev.type == "cpu" else torch.tanh
        # Transposed views, made once (views of fixed buffers stay valid).
        self.xT, self.hT = self.x.t(), self.h.t()
        self.W1T, self.W2T = self.fp.p["W1"].t(), self.fp.p["W2"].t()
        self.DT = self.fp.p["D"].t() if m.args.direct else None
        # Optimizer state, lazily zero like torch.optim's (AdamW step count, SGD momentum buffer).
        self.opt_steps = 0
        self.buf = torch.zeros_like(self.fp.flat)
        self.buf2 = torch.zeros_like(self.fp.flat)
        self.denom = torch.zeros_like(self.fp.flat)

    # ---- one step -------------------------------------------------------------------------

    def forward(self, Xb, Yb, picked, mean, std):
        """Xb (B, T) contexts, Yb (B, 1) targets; writes log p of the targets into picked
        (B, 1) and the BatchNorm batch statistics into mean and std (1, H)."""
        p, m = self.fp.p, self.model
        B, E = self.batch_size, m.args.n_embd
        torch.index_select(p["C"], 0, Xb.reshape(-1), out=self.x.view(-1, E))  # (B*T, E)
        x = self.x  # (B, T*E)
        if m.args.batchnorm:
            torch.mm(x, p["W1"], out=self.hpre)  # (B, H)
            # mean and unbiased std (no eps) as the reference; torch.std_mean is ~4x slower here
            torch.mm(self.mean_row, self.hpre, out=mean)
            torch.sub(self.hpre, mean, out=self.xhat)
            torch.mul(self.xhat, self.xhat, out=self.tmp)
            torch.mm(self.var_row, self.tmp, out=std)
            std.sqrt_()
            self.xhat.div_(std)
            torch.addcmul(p["bnbias"], self.xhat, p["bngain"], out=self.hpre)
        else:
            torch.addmm(p["b1"], x, p["W1"], out=self.hpre)
        self.tanh_into(self.hpre, out=self.h)
        torch.addmm(p["b2"], self.h, p["W2"], out=self.logits)  # (B, V)
        if m.args.direct:
            self.logits.addmm_(x, p["D"])
        torch.log_softmax(self.logits, 1, out=self.dlog)
        torch.gather(self.dlog, 1, Yb, out=picked)  # summed into the loss once per run

    def tanh_by_sigmoid(self, x, out):
        """out = tanh(x) as 2*sigmoid(2x) - 1: torch's CPU tanh kernel is about 3x slower than
        its sigmoid, and 15% of a step at hidden 500. Within 2e-7 of tanh (absolute)."""
        torch.mul(x, self.two, out=out)
        out.sigmoid_().mul_(self.two).sub_(self.one)

    def backward(self, Xb, Yb, std):
        p, g, m = self.fp.p, self.fp.g, self.model
        B, E = self.batch_size, m.args.n_embd
        x, h, dlog, dh = self.x, self.h, self.dlog, self.dh
        # d loss / d logits = (softmax - onehot) / B
        dlog.exp_()
        dlog.scatter_add_(1, Yb, self.minus_ones)
        dlog.mul_(self.inv_b)  # (B, V)
        torch.mm(self.hT, dlog, out=g["W2"])
        torch.sum(dlog, 0, out=g["b2"])
        torch.mm(dlog, self.W2T, out=dh)  # (B, H)
        # through tanh: dh * (1 - h^2)
        torch.mul(dh, h, out=self.tmp)
        dh.addcmul_(self.tmp, h, value=-1.0)
        if m.args.batchnorm:
            # dgain = sum(dh*xhat), dbias = sum(dh); then the unbiased-std BatchNorm backward
            # dhpre = gain/std * (dh - dbias/B - xhat * dgain/(B-1))
            torch.mul(dh, self.xhat, out=self.tmp)
            torch.sum(self.tmp, 0, out=g["bngain"])
            torch.sum(dh, 0, out=g["bnbias"])
            dh.addcmul_(self.xhat, g["bngain"], value=-1.0 / (B - 1))
            dh.sub_(g["bnbias"], alpha=1.0 / B)
            torch.div(p["bngain"], std.view(-1), out=self.k)
            dh.mul_(self.k)
        else:
            torch.sum(dh, 0, out=g["b1"])
        torch.mm(self.xT, dh, out=g["W1"])  # (T*E, H)
        torch.mm(dh, self.W1T, out=self.dx)  # (B, T*E)
        if m.args.direct:
            torch.mm(self.xT, dlog, out=g["D"])
            self.dx.addmm_(dlog, self.DT)
        g["C"].zero_()
        g["C"].index_add_(0, Xb.reshape(-1), self.dx.view(-1, E))

    def update_running_stats(self, means, stds):
        """The reference's per-step r <- r + m*(s - r) for a whole run at once:
        r_n = (1-m)^n r_0 + sum_i m (1-m)^(n-1-i) s_i, in float64: two small matmuls instead
        of 2n ops, equal to the step-by-step update within float32 rounding."""
        m = self.model
        mom, n = m.args.bn_momentum, means.shape[0]
        weights = torch.tensor([mom * (1 - mom) ** (n - 1 - i) for i in range(n)],
                               dtype=torch.float64, device=means.device)
        keep = (1 - mom) ** n
        for running, stats in ((m.bnmean_running, means), (m.bnstd_running, stds)):
            running.copy_(running.double() * keep + weights @ stats.double())

    # ---- optimizers, as torch.optim (foreach=False) over the flat buffers -------------------

    def sgd(self, lr):
        o, P, G, nd = self.optimizer, self.fp.flat, self.fp.grad, self.fp.n_decay
        if o.weight_decay:
            G[:nd].add_(P[:nd], alpha=o.weight_decay)
        if o.momentum:
            if self.opt_steps == 0:
                self.buf.copy_(G)
            else:
                self.buf.mul_(o.momentum).add_(G)
            G = self.buf
        self.opt_steps += 1
        P.add_(G, alpha=-lr)

    def adamw(self, lr):
        o, P, G, nd = self.optimizer, self.fp.flat, self.fp.grad, self.fp.n_decay
        self.opt_steps += 1
        t = self.opt_steps
        if o.weight_decay:
            P[:nd].mul_(1 - lr * o.weight_decay)
        self.buf.lerp_(G, 1 - o.beta1)
        self.buf2.mul_(o.beta2).addcmul_(G, G, value=1 - o.beta2)
        bc1, bc2_sqrt = 1 - o.beta1 ** t, (1 - o.beta2 ** t) ** 0.5
        torch.sqrt(self.buf2, out=self.denom)
        self.denom.div_(bc2_sqrt).add_(o.eps)
        P.addcdiv_(self.buf, self.denom, value=-lr / bc1)

    # ---- the loop -------------------------------------------------------------------------

    @torch.no_grad()
    def run(self, start: int, n: int) -> torch.Tensor:
        ix = self.batch_indices(n).to(self.X.device)  # (n, B)
        Xs, Ys = self.X[ix], self.Y[ix].unsqueeze(-1)  # (n, B, T), (n, B, 1)
        step = self.adamw if isinstance(self.optimizer, AdamW) else self.sgd
        bn = self.model.args.batchnorm
        lrs = [self.optimizer.lr_at(start + i, self.total_steps) for i in range(n)]
        dev, dt, H = self.fp.flat.device, self.fp.flat.dtype, self.model.args.n_hidden
        picked = torch.empty(n, self.batch_size, 1, device=dev, dtype=dt)
        means, stds = (torch.empty(n, 1, H, device=dev, dtype=dt) for _ in range(2))
        self.fp.load()
        for Xb, Yb, pk, mean, std, lr in zip(Xs.unbind(0), Ys.unbind(0), picked.unbind(0),
                                             means.unbind(0), stds.unbind(0), lrs):
            self.forward(Xb, Yb, pk, mean, std)
            self.backward(Xb, Yb, std)
            step(lr)
        if bn:
            self.update_running_stats(means.view(n, H), stds.view(n, H))
        self.fp.store()
        return picked.view(n, -1).sum(1).mul_(-1.0 / self.batch_size).cpu()
