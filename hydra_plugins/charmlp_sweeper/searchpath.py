"""Adds charmlp's config dir to every Hydra app's search path, after the app's own entries
(so the app's configs win on a name clash). Cheap to import: Hydra scans it at every start."""
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from charmlp.configs import conf_dir


class CharmlpSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        path = f"file://{conf_dir()}"
        if all(entry.path != path for entry in search_path.get_path()):
            search_path.append(provider="charmlp", path=path)
