"""Build hook: a wheel carries conf/ and sweeps/ as charmlp/conf/ (sweeps/ as its sweep/ group),
so charmlp-train finds its configs from any directory. Everything else is in pyproject.toml."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class build_py_with_configs(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # editable installs read conf/ beside the package (charmlp/configs.py)
        dest = Path(self.build_lib) / "charmlp" / "conf"
        shutil.rmtree(dest, ignore_errors=True)
        # conf/sweep is a link to ../sweeps in the repo: copy the presets themselves, since a
        # link (or a checkout without symlinks, where it is a text file) does not survive a wheel.
        shutil.copytree(ROOT / "conf", dest, ignore=lambda d, names: ["sweep"] if Path(d) == ROOT / "conf" else [])
        shutil.copytree(ROOT / "sweeps", dest / "sweep")


setup(cmdclass={"build_py": build_py_with_configs})
