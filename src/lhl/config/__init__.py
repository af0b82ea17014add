"""Configs: the typed schema (`schema`), YAML presets and overrides composed into one run config
(`compose`)."""
from lhl.config.compose import (
    ConfigError, experiments_dir, load_config, method_tag, to_yaml, validate,
)
from lhl.config.schema import (
    Config, DataConfig, EvalConfig, LoggerConfig, ModelConfig, RunConfig, SequenceConfig, TrainConfig,
)

__all__ = [
    "Config", "ConfigError", "DataConfig", "EvalConfig", "LoggerConfig", "ModelConfig", "RunConfig",
    "SequenceConfig", "TrainConfig", "experiments_dir", "load_config", "method_tag", "to_yaml", "validate",
]
