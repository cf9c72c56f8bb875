"""The machine's single-core FMA peak in GFLOP/s, measured by a tiny C kernel (peak.c)
built and cached exactly as the native engine is (same compiler, flags and cache), so that
charmlp-bench can say what fraction of the core a training step uses."""
import ctypes
import time
from pathlib import Path

from . import native

SOURCE = Path(__file__).with_name("peak.c")
_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """The compiled calibration kernel; raises native.NativeUnavailable without a compiler."""
    global _lib
    if _lib is None:
        lib = native.load(SOURCE)
        lib.charmlp_peak.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_float)]
        lib.charmlp_peak.restype = ctypes.c_double
        _lib = lib
    return _lib


def gflops(seconds: float = 0.05, repeats: int = 3) -> float:
    """Best GFLOP/s of `repeats` bursts of about `seconds` each, in this thread's CPU time,
    like the bench's steps/s (so both see the same machine)."""
    lib, sink, iters = library(), ctypes.c_float(), 1 << 16
    while True:  # size a burst to about `seconds`
        t0 = time.thread_time()
        lib.charmlp_peak(iters, ctypes.byref(sink))
        if time.thread_time() - t0 >= seconds / 4 or iters > 1 << 30:
            break
        iters *= 4
    best = 0.0
    for _ in range(repeats):
        t0 = time.thread_time()
        flops = lib.charmlp_peak(iters, ctypes.byref(sink))
        best = max(best, flops / max(time.thread_time() - t0, 1e-9) / 1e9)
    return best
