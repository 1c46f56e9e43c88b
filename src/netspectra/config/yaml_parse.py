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

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # An explicit tag on a value it cannot convert (``!!float true``, ``!!int x``, ``!!float ''``):
        # PyYAML's constructors raise bare ValueError/IndexError, which reached the user as a traceback.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"the value {node.value!r} cannot be read as {node.tag} ({exc})", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):  # ``!!set [a]``: the base class says it is no mapping
            return super().construct_mapping(node, deep=deep)
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


#: Collections nested deeper than this are refused: a configuration nests a few levels, and libyaml's
#: composer recurses on the C stack (``[`` 50,000 times crashed the process with a segmentation fault).
MAX_DEPTH = 100
#: Nodes that aliases may repeat, beyond ten times the nodes written: an alias of an alias of ... (a
#: "billion laughs") is a few hundred bytes that expand to billions of nodes, and every walk of the data
#: (the cache's secret check, validation, printing) took that long.
MAX_ALIASED_NODES = 100_000


def check_structure(text: str) -> None:
    """Refuse, with PyYAML's ``ComposerError`` at the place in ``text``, nesting deeper than
    :data:`MAX_DEPTH`, aliases that repeat more than ``MAX_ALIASED_NODES`` + 10 x the written nodes, and an
    alias inside the node its anchor names (a recursive structure, which no setting is). One pass over the
    parser's events (no recursion, nothing built); syntax errors are left to the parse that follows."""
    sizes: dict[str, int] = {}  # anchor -> nodes of its node, aliases expanded
    stack: list[list[Any]] = []  # open collections: [anchor, nodes so far]
    written = aliased = 0
    try:
        for event in yaml.parse(text, Loader=_SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise yaml.composer.ComposerError(
                        None, None, f"collections nested more than {MAX_DEPTH} levels deep", event.start_mark
                    )
                written += 1
                stack.append([event.anchor, 1])
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, n = stack.pop()
                if anchor is not None:
                    sizes[anchor] = n
            elif isinstance(event, yaml.ScalarEvent):
                written += 1
                n = 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                if any(a == event.anchor for a, _ in stack):
                    raise yaml.composer.ComposerError(
                        None,
                        None,
                        f"the alias *{event.anchor} is inside the node its anchor names (a recursive "
                        "structure); no setting is one",
                        event.start_mark,
                    )
                n = sizes.get(event.anchor, 1)  # (an undefined alias: the parse reports it)
                aliased += n
                if aliased > MAX_ALIASED_NODES + 10 * written:
                    raise yaml.composer.ComposerError(
                        None,
                        None,
                        f"aliases repeat {aliased:,} nodes by here, for {written:,} written up to this "
                        "point (an alias bomb?); write the values out or use fewer aliases of aliases",
                        event.start_mark,
                    )
            else:
                continue
            if stack:
                stack[-1][1] += n
    except yaml.composer.ComposerError:
        raise
    except yaml.YAMLError:
        return  # a syntax error: the parse reports it


def load_yaml(text: str) -> Any:
    """The data of the YAML ``text``; PyYAML's ``YAMLError`` (with its marks) when it is not valid, or when
    its structure is out of bounds (:func:`check_structure`)."""
    check_structure(text)
    return yaml.load(text, Loader=Yaml12BoolLoader)
