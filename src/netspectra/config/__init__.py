"""Configuration: the original's ``configs/config.yaml`` schema, read with Go's rules and validated once.

``load_config()`` -> a frozen :class:`Config`; problems raise :class:`ConfigError` listing every one
with its key path, value and fix. ``netspectra config check`` prints the effective configuration.

The configuration knows the service sections (``api``, ``ai``, ``probe``, ``alerter``, ``smtp``,
``ops``) and the *shape* of ``aggregator``; what a task or a writer entry holds is declared by its kind
(:mod:`netspectra.kinds`): ``ExactTaskConfig`` lives in :mod:`netspectra.tasks.exact_kind`,
``SketchTaskConfig`` in :mod:`netspectra.sketches.sketch_kind`, ``ClickHouseConfig`` in
:mod:`netspectra.storage.clickhouse_config`. They are importable from here too (loaded on first use).
"""

from typing import Any

from netspectra.config.aggregator import (
    AggregatorConfig,
    ExactWriterConfig,
    GroupConfig,
    SketchWriterConfig,
    WriterConfig,
)
from netspectra.config.base import format_go_duration, parse_go_duration
from netspectra.config.env import expand_env, load_env_files
from netspectra.config.loader import (
    ConfigError,
    default_config_path,
    effective_config_dict,
    load_config,
    parse_config_text,
)
from netspectra.config.models import (
    AiAnalysisConfig,
    AiConfig,
    AlerterConfig,
    AlertRule,
    ApiConfig,
    Config,
    PersistenceConfig,
    ProbeConfig,
    SmtpConfig,
)

#: Names declared by kind modules, re-exported lazily (importing them here would make the
#: configuration import every kind).
_KIND_NAMES = {
    "ClickHouseConfig": "netspectra.storage.clickhouse_config",
    "ExactTaskConfig": "netspectra.tasks.exact_kind",
    "SketchTaskConfig": "netspectra.sketches.sketch_kind",
    "RootPathConfig": "netspectra.storage.kinds",
}


def __getattr__(name: str) -> Any:
    if name in _KIND_NAMES:
        import importlib

        return getattr(importlib.import_module(_KIND_NAMES[name]), name)
    raise AttributeError(f"module 'netspectra.config' has no attribute {name!r}")


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
    "ExactTaskConfig",
    "ExactWriterConfig",
    "GroupConfig",
    "PersistenceConfig",
    "ProbeConfig",
    "RootPathConfig",
    "SketchTaskConfig",
    "SketchWriterConfig",
    "SmtpConfig",
    "WriterConfig",
    "default_config_path",
    "effective_config_dict",
    "expand_env",
    "format_go_duration",
    "load_config",
    "load_env_files",
    "parse_config_text",
    "parse_go_duration",
]
