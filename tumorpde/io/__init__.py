"""Files: TOML, run records (run.json, observables.csv), XDMF fields, checkpoints."""
