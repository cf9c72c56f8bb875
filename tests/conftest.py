"""Shared fixtures: tiny data the tests make themselves, and configs composed by Hydra."""
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from charmlp.train import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
SHARED_NAMES = ROOT.parent / "shared" / "data" / "names.txt"
TINY = ["trainer.steps=200", "trainer.eval_interval=100", "trainer.history_interval=50"]


def make_names(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vowels, consonants = "aeiouy", "bcdfghjklmnprstvz"
    return ["".join(rng.choice(vowels if i % 2 else consonants) for i in range(rng.randint(3, 8)))
            for _ in range(n)]


@pytest.fixture(scope="session")
def names_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(make_names()))
    return path


@pytest.fixture
def make_cfg(names_file):
    """compose(overrides) -> the composed train config on the tiny data."""
    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=CONF_DIR):
            return compose("train", [f"data.path={names_file}", *TINY, *overrides])
    return _compose


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a console command as a user would, in a subprocess."""
    return subprocess.run([*args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def native_available() -> bool:
    """Whether the native engine builds and loads here (tests of it skip, saying so, if not)."""
    from charmlp.engines import native
    try:
        native.library()
        return True
    except native.NativeUnavailable:
        return False
