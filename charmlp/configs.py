"""Where charmlp's Hydra configs live. Kept free of heavy imports: Hydra's plugin scan reads it
at every start of every Hydra app."""
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

_PACKAGE = Path(__file__).resolve().parent


def conf_dir() -> str:
    """charmlp/conf inside an installed wheel (the build copies conf/ and sweeps/ there); conf/
    beside the package in a source checkout or an editable install."""
    packaged = _PACKAGE / "conf"
    return str(packaged if packaged.is_dir() else _PACKAGE.parent / "conf")


class CharmlpSearchPathPlugin(SearchPathPlugin):
    """Adds charmlp's config dir to every Hydra app's search path, after the app's own entries
    (so the app's configs win on a name clash): hydra/sweeper=charmlp, its samplers, pruners and
    launchers then resolve in any Hydra app. Registered by the `hydra.plugins` entry point."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        path = f"file://{conf_dir()}"
        if all(entry.path != path for entry in search_path.get_path()):
            search_path.append(provider="charmlp", path=path)
