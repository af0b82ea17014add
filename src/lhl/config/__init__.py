"""Configs: the typed schema (`schema`), YAML presets and overrides composed into one run config
(`compose`), and the checks against the method, dataset and sequence done before anything runs
(`resolve`). `load_config` is the composed and resolved config every entry point uses."""
from lhl.config.compose import ConfigError, experiments_dir, method_tag, to_yaml, validate
from lhl.config.resolve import load_config, resolve
from lhl.config.schema import (
    Config, DataConfig, EvalConfig, LoggerConfig, ModelConfig, RunConfig, SequenceConfig, TrainConfig,
)

__all__ = [
    "Config", "ConfigError", "DataConfig", "EvalConfig", "LoggerConfig", "ModelConfig", "RunConfig",
    "SequenceConfig", "TrainConfig", "experiments_dir", "load_config", "method_tag", "resolve",
    "to_yaml", "validate",
]
