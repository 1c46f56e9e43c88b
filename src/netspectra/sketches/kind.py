"""Sketch kinds: what a kind of sketch (``skt_type`` of a sketch task) declares and builds.

A :class:`SketchKind` declares its parameters model (``width``, ``depth``, thresholds, ... with the
defaults the original applies to 0 and the valid ranges), which heavy-hitter types it reports, whether
it counts elements, and the memory it allocates; it builds its :class:`~netspectra.sketches.base.Sketch`
on demand (the implementation module, with its numba kernels, is imported only then). The ``sketch``
aggregator, the configuration check, the API, the storage and the alerting ask the kind.

Built-in kinds are registered in :data:`netspectra.kinds.SKETCHES` (``countmin`` = ``skt_type: 0``,
``superspread`` = ``skt_type: 1``, the original's numbers); plugins through the ``netspectra.sketches``
entry-point group, named by their kind name in ``skt_type``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

from netspectra.config.base import Section
from netspectra.kinds import KindError, load_object

if TYPE_CHECKING:
    from netspectra.sketches.base import Sketch


class HitterType(IntEnum):
    """``Type`` of a heavy-hitter row (the original's ``heavy_hitters.Type``)."""

    COUNT = 0  #: packets per flow
    SIZE = 1  #: bytes per flow
    SPREAD = 2  #: distinct elements per flow


#: The original's ``skt_type`` numbers -> the kind names.
SKT_TYPES: dict[int, str] = {0: "countmin", 1: "superspread"}


class SketchKind:
    """Base of every sketch kind (see the module docstring); subclasses set the class attributes."""

    #: The kind's name (``skt_type`` may give it by name; built-ins also by number).
    name: ClassVar[str] = ""
    #: The original's ``skt_type`` number, for the built-in kinds.
    skt_type: ClassVar[int | None] = None
    #: Model of the kind's parameters, read from the task entry beside name/skt_type/fields/seed.
    params_model: ClassVar[type[Section]]
    #: The heavy-hitter types the sketch reports (a list each, possibly empty).
    hitter_types: ClassVar[tuple[HitterType, ...]] = ()
    #: Whether the sketch counts distinct ``element_fields`` per flow (they are then required).
    uses_elements: ClassVar[bool] = False
    #: ``"module:Class"`` of the :class:`~netspectra.sketches.base.Sketch` implementation.
    impl: ClassVar[str] = ""
    #: One line for listings.
    description: ClassVar[str] = ""
    #: The name in messages (``CountMin``).
    title: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"<sketch kind {self.name!r}>"

    @property
    def number(self) -> int | str:
        """How ``skt_type`` names this kind in an effective configuration: the original's number, else
        the name."""
        return self.skt_type if self.skt_type is not None else self.name

    def memory_bytes(self, params: Any, flow_bytes: int, element_bytes: int) -> int:
        """Bytes the sketch allocates for ``params`` (the validated params model) and key widths."""
        return 0

    def memory_detail(self, params: Any) -> str:
        """What :meth:`memory_bytes` is made of, for messages."""
        return ""

    def resolve(self, params: Any, flow_bytes: int, element_bytes: int) -> Any:
        """``params`` completed with what depends on the task's key widths (e.g. a memory derived from
        a width); called once by the task's validation. Identity by default."""
        return params

    def sketch_class(self, variant: str = "") -> type[Sketch]:
        """The implementation of ``variant`` (imports its module): a built-in kind's variants come from
        :mod:`netspectra.sketches.variants`, a plugin kind's class from ``impl``."""
        if self.skt_type is not None:
            from netspectra.sketches.variants import variant_class

            return variant_class(self.skt_type, variant)
        return load_object(self.impl)


def as_sketch_kind(name: str, obj: Any) -> SketchKind:
    """The registry's check: a :class:`SketchKind` (class or instance) named ``name``."""
    if isinstance(obj, type) and issubclass(obj, SketchKind):
        obj = obj()
    if not isinstance(obj, SketchKind):
        raise KindError(f"is a {type(obj).__name__}, not a SketchKind")
    if obj.name != name:
        raise KindError(f"its kind object is named {obj.name!r}; register it under that name")
    return obj


def sketch_kind_name(skt_type: Any) -> str:
    """The kind name ``skt_type`` means: the original's numbers (0, 1, also as text) or a kind name;
    ``ValueError`` listing the valid values otherwise (names are not checked against the registry here)."""
    if isinstance(skt_type, bool):
        raise ValueError(f"{skt_type!r} is not a sketch type; {_VALID}")
    if isinstance(skt_type, int):
        if skt_type in SKT_TYPES:
            return SKT_TYPES[skt_type]
        raise ValueError(f"{skt_type!r} is not a sketch type; {_VALID}")
    if isinstance(skt_type, str):
        text = skt_type.strip()
        if text.isdigit():
            return sketch_kind_name(int(text))
        if text:
            return text
    raise ValueError(f"{skt_type!r} is not a sketch type; {_VALID}")


_VALID = (
    "valid skt_type values are 0 (CountMin: heavy hitters by packets and bytes) or 1 (SuperSpread: "
    "spread per flow), or the name of a sketch kind"
)
