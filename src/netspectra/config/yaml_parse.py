"""The YAML parse of a configuration's text: PyYAML with the original's rules (YAML 1.2 booleans, a key
written twice refused).

A module of its own, imported only when a text is parsed: PyYAML's import costs ~10 ms of every start,
and a configuration whose parsed data are in the cache (:mod:`netspectra.config.parsed_cache`) is not
parsed at all. :func:`netspectra.config.loader._yaml_rules` fingerprints this file and PyYAML's without
importing either.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: libyaml's parser where PyYAML was built with it (10x faster than the pure-Python one: a ``networks`` map
#: of 2,000 entries parsed in 0.3 s instead of 3.4 s, at every start); the same constructor and resolver.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Yaml12BoolLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """SafeLoader whose only booleans are true/false (YAML 1.2, like yaml.v3), not yes/no/on/off, and
    which refuses a key written twice in one mapping (as yaml.v3 does; PyYAML would keep the last one
    silently, e.g. the second of two identical ``enrichment.networks`` entries)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    f"while constructing a mapping (its key {key!r} first appears on line {first.line + 1})",
                    node.start_mark,
                    f"found the key {key!r} a second time; keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


Yaml12BoolLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12BoolLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """The data of the YAML ``text``; PyYAML's ``YAMLError`` (with its marks) when it is not valid."""
    return yaml.load(text, Loader=Yaml12BoolLoader)
