"""Where charmlp keeps what it downloads and builds for this user: names.txt and the compiled
native engine. Torch-free, like native_build.py, which the package's build hook imports."""
import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("CHARMLP_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root) / "charmlp" if root else Path.home() / ".cache" / "charmlp"
