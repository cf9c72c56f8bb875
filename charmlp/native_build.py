"""Compiling charmlp's C kernels (engines/*.c) with this machine's C compiler, cached under
<charmlp cache>/native/<hash>/, where the hash covers the source, the compiler, its flags
and the CPU (-march=native picks the vector width: AVX-512 where the CPU has it, else AVX2).

Torch-free, so that the package's build hook (setup.py) can compile the native engine when
charmlp is installed: a sweep's first trials then find it built, instead of each slot's
worker stopping ~4 s to compile it. Without that (a cleared cache, another compiler), the
engine builds on first use, as before, and logs one warning saying so."""
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from .cache import cache_dir

log = logging.getLogger("charmlp.engines.native")  # where a build is reported, install or run

SOURCE = Path(__file__).parent / "engines" / "native_step.c"
# -march=native vectorises the inner loops; no -ffast-math, which would reorder the float
# maths (and let the compiler assume no NaN, which divergence checks rely on).
FLAG_SETS = (["-O3", "-march=native", "-fno-math-errno"], ["-O3", "-fno-math-errno"])
BASE_FLAGS = ["-std=c11", "-fPIC", "-shared"]
MARCH_ENV = "CHARMLP_NATIVE_MARCH"
# The vector ISAs a named -march may turn on (the compiler's macro), and the /proc/cpuinfo flag
# the CPU needs for each: a build for a CPU this one is not would die of SIGILL mid-trial.
ISA_FLAGS = {"__AVX__": "avx", "__AVX2__": "avx2", "__FMA__": "fma", "__AVX512F__": "avx512f",
             "__AVX512VL__": "avx512vl", "__AVX512BW__": "avx512bw", "__AVX512DQ__": "avx512dq"}


class NativeUnavailable(RuntimeError):
    """The C kernel cannot be built or loaded here."""


def disabled() -> bool:
    return os.environ.get("CHARMLP_NO_NATIVE", "") not in ("", "0")


def march() -> str:
    """The CPU the kernels are compiled for: this one (-march=native) unless $CHARMLP_NATIVE_MARCH
    names another CPU type the compiler knows (haswell: AVX2's 8 lanes, even on an AVX-512 CPU,
    to measure or ship that build)."""
    return os.environ.get(MARCH_ENV, "").strip() or "native"


def flag_sets() -> list[list[str]]:
    """FLAG_SETS, built for march()'s CPU. A named CPU is not retried without -march: that
    would quietly build something other than what was asked for."""
    cpu = march()
    if cpu == "native":
        return [list(flags) for flags in FLAG_SETS]
    return [[f"-march={cpu}" if f == "-march=native" else f for f in FLAG_SETS[0]]]


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def cpuinfo(field: str) -> str | None:
    """The first value of a /proc/cpuinfo field ("model name", "flags"), None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_id() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    found = [cpuinfo("model name"), cpuinfo("flags")]
    return "\n".join([platform.machine(), platform.processor()] + [f for f in found if f])


def missing_isa(cc: str, flags: list[str]) -> list[str]:
    """Vector ISAs a build with `flags` would use that this CPU lacks ([] where /proc/cpuinfo
    lists no flags: nothing to compare against)."""
    have = cpuinfo("flags")
    if have is None:
        return []
    try:
        r = subprocess.run([cc, *flags, "-dM", "-E", "-x", "c", os.devnull],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []  # the build itself will report the compiler
    defined = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("#define ")}
    return sorted(f for macro, f in ISA_FLAGS.items() if macro in defined and f not in have.split())


def compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"C compiler {cc} does not run ({e})") from None


def first_error(stderr: str) -> str:
    """The compiler's first error line (a bad -march is followed by every valid one), else
    the end of what it said."""
    return next((line for line in stderr.splitlines() if "error" in line), stderr.strip()[-500:])


def build(cc: str, source: Path = SOURCE, defines: tuple[str, ...] = ()) -> Path:
    """Compile `source` (with -D`defines`) into the cache (atomically) unless it is there;
    return the .so. The first build of each logs once why this call is slow."""
    text, version, errors = source.read_bytes(), compiler_version(cc), []
    extra, cpu = [f"-D{d}" for d in defines], march()
    for i, flags in enumerate(flag_sets()):
        key = hashlib.sha256(b"\0".join([text, cc.encode(), version.encode(),
                                         " ".join(flags + BASE_FLAGS + extra).encode(),
                                         machine_id().encode()])).hexdigest()[:16]
        target = cache_dir() / "native" / key / f"lib{source.stem}.so"
        if target.is_file():
            return target  # its key holds this CPU's flags: it passed the check below here
        if cpu != "native" and (lacking := missing_isa(cc, flags)):
            raise NativeUnavailable(f"{MARCH_ENV}={cpu} builds for {', '.join(lacking)}, which this "
                                    f"CPU lacks; fix: unset it or name an older CPU type")
        if i == 0:
            log.warning("building the native engine once (cached in %s)", target.parent.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", prefix=".build-", dir=target.parent)
        os.close(fd)
        cmd = [cc, *flags, *BASE_FLAGS, *extra, "-o", tmp, str(source), "-lm"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode == 0:
                os.replace(tmp, target)  # concurrent builders each write a whole file
                return target
            errors.append(f"{' '.join(flags)}: {first_error(r.stderr)}")
        except (OSError, subprocess.SubprocessError) as e:
            errors.append(f"{' '.join(flags)}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    fix = "" if cpu == "native" else f"; fix: unset {MARCH_ENV} or name a CPU type {cc} knows"
    raise NativeUnavailable(f"compiling {source.name} with {cc} failed: {'; '.join(errors)}{fix}")


def prebuild() -> Path | None:
    """The native engine compiled into the cache now (setup.py calls this when charmlp is
    installed); None where it is disabled or there is no compiler. Raises NativeUnavailable
    when the compiler fails."""
    cc = compiler()
    if disabled() or cc is None:
        return None
    return build(cc, SOURCE)
