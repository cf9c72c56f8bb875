"""Build hooks: a wheel carries conf/ and sweeps/ as charmlp/conf/ (sweeps/ as its sweep/ group),
so charmlp-train finds its configs from any directory; and the native engine is compiled for
this machine as charmlp is installed. Everything else is in pyproject.toml."""
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class build_py_with_configs(build_py):
    def run(self) -> None:
        super().run()
        build_native_engine()
        if getattr(self, "editable_mode", False):
            return  # editable installs read conf/ beside the package (charmlp/configs.py)
        dest = Path(self.build_lib) / "charmlp" / "conf"
        shutil.rmtree(dest, ignore_errors=True)
        # conf/sweep is a link to ../sweeps in the repo: copy the presets themselves, since a
        # link (or a checkout without symlinks, where it is a text file) does not survive a wheel.
        shutil.copytree(ROOT / "conf", dest, ignore=lambda d, names: ["sweep"] if Path(d) == ROOT / "conf" else [])
        shutil.copytree(ROOT / "sweeps", dest / "sweep")


def build_native_engine() -> None:
    """Compile the native engine into charmlp's cache now, where the runtime looks for it, so
    that the first sweep's workers do not each stop ~4 s to compile it. Never fails the
    install: without a compiler, or if it fails, the engine builds (or falls back) at run time.
    charmlp.native_build needs no torch, which pip's isolated build environment lacks."""
    sys.path.insert(0, str(ROOT))
    try:
        from charmlp.native_build import prebuild
        built = prebuild()
        print(f"charmlp: native engine {'in ' + str(built) if built else 'not built (no compiler, or disabled)'}")
    except Exception as e:  # noqa: BLE001 -- an install must not fail for an optional speed-up
        print(f"charmlp: native engine not built now ({type(e).__name__}: {e}); it builds on first use")
    finally:
        sys.path.remove(str(ROOT))


setup(cmdclass={"build_py": build_py_with_configs})
