"""charmlp's Hydra plugin: makes hydra/sweeper=charmlp (and charmlp's launchers, samplers and
pruners under conf/hydra/) resolve in any Hydra app once charmlp is installed."""
