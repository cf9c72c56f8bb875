"""Where charmlp's Hydra configs live. Kept free of heavy imports: Hydra's plugin scan reads it
at every start of every Hydra app."""
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def conf_dir() -> str:
    """charmlp/conf inside an installed wheel (the build copies conf/ and sweeps/ there); conf/
    beside the package in a source checkout or an editable install."""
    packaged = _PACKAGE / "conf"
    return str(packaged if packaged.is_dir() else _PACKAGE.parent / "conf")
