"""The training loop as a C kernel (native_step.c), compiled by native_build.py (when charmlp
is installed, else on first use) and loaded with ctypes. It reads and writes the model's own
float32 CPU tensors through their data pointers, and runs a whole run(start, n) call in C.
`split_loss` is the full-split evaluation by the same kernel's forward pass (charmlp_eval).

When no compiler is found, the build fails, or CHARMLP_NO_NATIVE=1 is set, `unsupported()`
says why, a warning is logged once per process, and `auto` goes on to the torch engine. A
second build with -DCHARMLP_PROFILE (profile_library) times each phase of a step for
charmlp-bench --profile."""
import ctypes
import logging
from pathlib import Path

import torch

from .. import evaluate
from ..native_build import SOURCE, NativeUnavailable, build, compiler, disabled
from ..optim import AdamW, SGD
from .base import Engine

log = logging.getLogger(__name__)

SLOTS = ("C", "W1", "b1", "W2", "b2", "D", "bngain", "bnbias")  # order of the C enum
NP = len(SLOTS)
FloatPtrs = ctypes.c_void_p * NP


class Net(ctypes.Structure):
    """Mirror of `Net` in native_step.c."""
    _fields_ = [(k, ctypes.c_int64) for k in ("V", "E", "T", "H", "B", "batchnorm", "direct",
                                                 "opt", "opt_steps")] + \
               [(k, ctypes.c_double) for k in ("bn_momentum", "momentum", "weight_decay",
                                                  "beta1", "beta2", "eps")] + \
               [("param", FloatPtrs), ("state1", FloatPtrs), ("state2", FloatPtrs),
                ("rmean", ctypes.c_void_p), ("rstd", ctypes.c_void_p)]


_lib: ctypes.CDLL | None = None
_failure: str | None = None  # why the build failed, remembered so we try and warn once


def reset_build_cache() -> None:
    """Forget the loaded library and any failure (tests use this to exercise the fallback)."""
    global _lib, _failure
    _lib, _failure = None, None


def load(source: Path = SOURCE, defines: tuple[str, ...] = ()) -> ctypes.CDLL:
    """`source` compiled (cached) and loaded; raises NativeUnavailable."""
    if disabled():
        raise NativeUnavailable("disabled by CHARMLP_NO_NATIVE")
    cc = compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler (cc/gcc, or $CC) found")
    try:
        return ctypes.CDLL(str(build(cc, source, defines)))
    except OSError as e:
        raise NativeUnavailable(f"loading the compiled kernel failed: {e}") from None


def _load(defines: tuple[str, ...] = ()) -> ctypes.CDLL:
    lib = load(SOURCE, defines)
    lib.charmlp_run.argtypes = [ctypes.POINTER(Net), ctypes.c_int64, ctypes.c_void_p,
                                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.charmlp_run.restype = ctypes.c_int
    lib.charmlp_eval.argtypes = [ctypes.POINTER(Net), ctypes.c_int64, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.POINTER(ctypes.c_double)]
    lib.charmlp_eval.restype = ctypes.c_int
    lib.charmlp_profile.argtypes = [ctypes.c_void_p]
    lib.charmlp_profile.restype = ctypes.c_int64
    lib.charmlp_lanes.restype = ctypes.c_int64
    return lib


def library() -> ctypes.CDLL:
    """The compiled kernel, built once per process; raises NativeUnavailable (logged once)."""
    global _lib, _failure
    if _lib is not None:
        return _lib
    if _failure is None:
        try:
            _lib = _load()
            return _lib
        except NativeUnavailable as e:
            _failure = str(e)
            log.warning("native engine unavailable (%s); the torch engine is used instead", _failure)
    raise NativeUnavailable(_failure)


def profile_library() -> ctypes.CDLL:
    """The kernel built with -DCHARMLP_PROFILE: each phase of a step timed (see PHASES)."""
    global _profile_lib
    if _profile_lib is None:
        library()  # the one place that decides whether native is available, and says why
        _profile_lib = _load(("CHARMLP_PROFILE",))
    return _profile_lib


_profile_lib: ctypes.CDLL | None = None
# The phases charmlp_profile() times, in its order.
PHASES = ("distinct tokens", "first layer", "BatchNorm + tanh", "output layer", "softmax/CE",
          "output layer grad", "BatchNorm + tanh grad", "first layer grad", "direct grad",
          "optimizer update")


def phase_seconds(lib: ctypes.CDLL) -> dict[str, float]:
    """Seconds per phase since the last call (zeros unless `lib` is the profiling build)."""
    out = (ctypes.c_double * len(PHASES))()
    lib.charmlp_profile(out)
    return dict(zip(PHASES, out))


def make_net(model, batch_size: int = 0, optimizer=None) -> Net:
    """The C struct's sizes and hyperparameters for `model` (and `optimizer`, when training)."""
    a, o = model.args, optimizer
    return Net(V=a.vocab_size, E=a.n_embd, T=a.block_size, H=a.n_hidden, B=batch_size,
               batchnorm=int(a.batchnorm), direct=int(a.direct), opt=int(isinstance(o, AdamW)),
               opt_steps=0, bn_momentum=a.bn_momentum,
               momentum=float(getattr(o, "momentum", 0.0)),
               weight_decay=float(getattr(o, "weight_decay", 0.0)),
               beta1=getattr(o, "beta1", 0.0), beta2=getattr(o, "beta2", 0.0),
               eps=getattr(o, "eps", 0.0))


def model_tensors(model) -> dict:
    """The model tensors the C struct points at, by slot name (None where the model has no
    such parameter), and BatchNorm's running statistics as rmean/rstd."""
    tensors = {k: getattr(model, k, None) for k in SLOTS}
    if model.args.batchnorm:
        tensors.update(rmean=model.bnmean_running, rstd=model.bnstd_running)
    return tensors


def bind(net: Net, model, state1: dict | None = None, state2: dict | None = None) -> None:
    """Point the C struct at the model's current tensors (checked: CPU, float32, contiguous)
    and at the optimizer state tensors, by parameter name."""
    tensors = model_tensors(model)
    params = {k: tensors[k] for k in SLOTS}
    for k, t in tensors.items():
        if t is not None and not (t.device.type == "cpu" and t.dtype == torch.float32
                                  and t.is_contiguous()):
            raise RuntimeError(f"native engine: {k} must be a contiguous float32 CPU tensor")
    ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
    for i, k in enumerate(SLOTS):
        net.param[i] = ptr(params[k])
        net.state1[i] = ptr((state1 or {}).get(k))
        net.state2[i] = ptr((state2 or {}).get(k))
    net.rmean = ptr(tensors.get("rmean"))
    net.rstd = ptr(tensors.get("rstd"))


def split_loss(model, X: torch.Tensor, Y: torch.Tensor) -> float:
    """Mean cross-entropy over a whole split in evaluation mode, as
    charmlp.evaluate.split_loss, by the C forward where the native engine applies (float32
    on CPU; the first layer becomes a table lookup), else by that torch function."""
    if X.shape[0] == 0 or NativeEngine.unsupported(model, SGD(), X.device) is not None:
        return evaluate.split_loss(model, X, Y)
    net = make_net(model)
    bind(net, model)
    Xc, Yc = X.to(torch.int64).contiguous(), Y.to(torch.int64).contiguous()
    total = ctypes.c_double()
    with torch.no_grad():
        rc = library().charmlp_eval(ctypes.byref(net), Xc.shape[0], Xc.data_ptr(), Yc.data_ptr(),
                                    ctypes.byref(total))
    if rc != 0:
        raise MemoryError("native engine: cannot allocate its evaluation workspace")
    return total.value / X.shape[0]


class NativeEngine(Engine):
    name = "native"
    run_chunk = 1000  # bit-identical results for any grouping of steps into calls

    @classmethod
    def unsupported(cls, model, optimizer, device):
        if torch.device(device).type != "cpu":
            return f"runs on CPU only, not {device}"
        if model.C.dtype != torch.float32:
            return f"float32 only, not {model.C.dtype}"
        if not isinstance(optimizer, (SGD, AdamW)):
            return f"optimizer {type(optimizer).__name__} has no C update"
        try:
            library()
        except NativeUnavailable as e:
            return f"unavailable: {e}"
        return None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        why = self.unsupported(self.model, self.optimizer, self.model.C.device)
        if why is not None:
            raise NativeUnavailable(f"native engine: {why}")
        if self.batch_size < 2 and self.model.args.batchnorm:
            raise NativeUnavailable("BatchNorm's unbiased std needs trainer.batch_size >= 2")
        self.lib = library()
        m, o = self.model, self.optimizer
        params = {k: getattr(m, k, None) for k in SLOTS}
        # Optimizer state the C code updates in place, kept across run() calls.
        is_adam = isinstance(o, AdamW)
        needs1 = is_adam or bool(getattr(o, "momentum", 0.0))
        zeros = lambda p: torch.zeros_like(p.detach(), memory_format=torch.contiguous_format)  # noqa: E731
        self.state1 = {k: zeros(p) for k, p in params.items() if p is not None and needs1}
        self.state2 = {k: zeros(p) for k, p in params.items() if p is not None and is_adam}
        self.net = make_net(m, self.batch_size, o)
        # The examples as the C loop reads them (int64, contiguous), converted once.
        self.Xl = self.X.to(torch.int64).contiguous()
        self.Yl = self.Y.to(torch.int64).contiguous()
        self._bound: tuple | None = None

    def run(self, start: int, n: int) -> torch.Tensor:
        ix = self.batch_indices(n).contiguous()  # (n, B): the C loop gathers the rows itself
        lrs = self.optimizer.lr_block(start, n, self.total_steps)  # float64, contiguous
        losses = torch.empty(n, dtype=torch.float32)
        self._bind()
        with torch.no_grad():
            rc = self.lib.charmlp_run(ctypes.byref(self.net), n, self.Xl.data_ptr(), self.Yl.data_ptr(),
                                      ix.data_ptr(), lrs.data_ptr(), losses.data_ptr())
        if rc != 0:
            raise MemoryError("native engine: cannot allocate its workspace")
        return losses

    def _bind(self) -> None:
        """Point the C struct at the model's tensors, again only when one was replaced
        (binding every call took 30 us, 1% of a 100-step call at emb10/hid200)."""
        key = tuple(t.data_ptr() for t in model_tensors(self.model).values() if t is not None)
        if key != self._bound:
            bind(self.net, self.model, self.state1, self.state2)
            self._bound = key
