"""Configuration: the original's ``configs/config.yaml`` schema, read with Go's rules and validated once.

``load_config()`` -> a frozen :class:`Config`; problems raise :class:`ConfigError` listing every one
with its key path, value and fix. ``netspectra config check`` prints the effective configuration.
"""

from netspectra.config.env import expand_env, load_env_files
from netspectra.config.loader import (
    ConfigError,
    default_config_path,
    effective_config_dict,
    load_config,
    parse_config_text,
)
from netspectra.config.models import (
    AggregatorConfig,
    AiAnalysisConfig,
    AiConfig,
    AlerterConfig,
    AlertRule,
    ApiConfig,
    ClickHouseConfig,
    Config,
    ExactGroupConfig,
    ExactTaskConfig,
    ExactWriterConfig,
    PersistenceConfig,
    ProbeConfig,
    SketchGroupConfig,
    SketchTaskConfig,
    SketchType,
    SketchWriterConfig,
    SmtpConfig,
    format_go_duration,
    parse_go_duration,
)

__all__ = [
    "AggregatorConfig",
    "AiAnalysisConfig",
    "AiConfig",
    "AlertRule",
    "AlerterConfig",
    "ApiConfig",
    "ClickHouseConfig",
    "Config",
    "ConfigError",
    "ExactGroupConfig",
    "ExactTaskConfig",
    "ExactWriterConfig",
    "PersistenceConfig",
    "ProbeConfig",
    "SketchGroupConfig",
    "SketchTaskConfig",
    "SketchType",
    "SketchWriterConfig",
    "SmtpConfig",
    "default_config_path",
    "effective_config_dict",
    "expand_env",
    "format_go_duration",
    "load_config",
    "load_env_files",
    "parse_config_text",
    "parse_go_duration",
]
