"""The presets (seq/, method/, kd/, slurm/), installed as the package data `lhl.experiments`."""
