"""Put charmlp's sweeper behind `hydra/sweeper=optuna`, for running hydra-optuna-sweeper's own
test suite against it (tests/test_upstream.py puts this directory on PYTHONPATH).

Hydra imports every module under hydra_plugins when it starts. This one imports the plugin's
config first, so its own registration of the same name always comes second and wins. Only
`_target_` changes: every other option keeps the plugin's default, as the suite expects."""
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf


@dataclass
class CharmlpAsOptunaConf(OptunaSweeperConf):
    _target_: str = "charmlp.sweep.sweeper.CharmlpSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=CharmlpAsOptunaConf,
                             provider="charmlp", replace=True)
