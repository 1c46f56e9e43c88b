"""The ``countmin`` sketch kind (``skt_type: 0``): heavy hitters by packets and by bytes per flow.

``variant`` chooses the algorithm (the one table is :mod:`netspectra.sketches.variants`):

==================  ==========================================================================
``heavyguardian``   the default: set-associative buckets with HeavyKeeper decay, exact counts
``mv``              majority-vote buckets with MV-Sketch estimates (NetSpectra's former default)
``original``        the original's majority vote and query, bit-exact
``cocosketch``      CocoSketch (SIGCOMM 2021), a baseline
==================  ==========================================================================

Parameters (0 or absent -> the default): ``size_threshold`` bytes (524 288; also spelt
``size_thereshold``) and ``count_threshold`` packets (512; also ``count_thereshold``) for every variant;
``width`` (1 048 576, at most 2^32 - 1) and ``depth`` (3, at most 64) for ``mv`` and ``original``;
``memory`` (bytes or ``640KiB``) for ``heavyguardian`` and ``cocosketch`` — absent, the memory ``mv``
takes at the configured ``width`` x ``depth`` (so switching a task to the default keeps its footprint),
else 1 MiB; ``depth`` (2, at most 8) for ``cocosketch``; ``b`` (1.08, > 1), ``heavyguardian``'s decay base.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AliasChoices, Field, model_validator

from netspectra.config.base import ByteSize, Section, UInt32
from netspectra.sketches.kind import HitterType, SketchKind
from netspectra.sketches.variants import DEFAULT_VARIANTS, SKETCH_VARIANTS

DEFAULT_WIDTH = 1 << 20
DEFAULT_DEPTH = 3
DEFAULT_SIZE_THRESHOLD = 524288
DEFAULT_COUNT_THRESHOLD = 512
DEFAULT_MEMORY = 1 << 20
DEFAULT_B = 1.08
COCO_DEFAULT_DEPTH = 2
WAYS = 8
#: Variants sized by ``width`` x ``depth``; the others by ``memory``.
BY_WIDTH = ("mv", "original")


def spelling_aliases(data: Any) -> Any:
    """Accept the original's ``size_thereshold`` / ``count_thereshold`` beside the right spellings; both
    with different values is an error."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for right, wrong in (("size_threshold", "size_thereshold"), ("count_threshold", "count_thereshold")):
        if right in data and wrong in data:
            if data[right] != data[wrong]:
                raise ValueError(
                    f"both {right} ({data[right]!r}) and its original spelling {wrong} ({data[wrong]!r}) "
                    f"are given with different values; keep only one of them"
                )
            del data[wrong]
    return data


def variant_of(skt_type: int, value: str) -> str:
    """``value`` resolved against the variants of ``skt_type`` (``""`` -> the default); ``ValueError``
    listing the valid ones."""
    name = value or DEFAULT_VARIANTS[skt_type]
    if name not in SKETCH_VARIANTS[skt_type]:
        valid = ", ".join(SKETCH_VARIANTS[skt_type])
        raise ValueError(f"{value!r} is not a variant of skt_type {skt_type}; valid variants are {valid}")
    return name


def words(key_length: int) -> int:
    """64-bit words of a key of ``key_length`` bytes."""
    return (key_length + 7) // 8


def bucket_bytes(key_length: int, variant: str) -> int:
    """Bytes of one ``mv``/``original`` bucket: two (key words, counter[, bucket total for mv]) pairs of
    8-byte words — the layout of :class:`~netspectra.sketches.countmin.CountMinSketch`'s table."""
    return 2 * (words(key_length) + 1 + int(variant != "original")) * 8


class CountMinParams(Section):
    """Parameters of a ``countmin`` task (see the module docstring)."""

    #: The algorithm; absent -> ``heavyguardian``. The effective configuration shows the resolved name.
    variant: str = ""
    width: UInt32 = 0
    depth: int = Field(0, ge=0, le=64)
    #: Heavy-hitter threshold in bytes. Also spelt ``size_thereshold``, as in the original.
    size_threshold: UInt32 = Field(0, validation_alias=AliasChoices("size_threshold", "size_thereshold"))
    #: Threshold in packets. Also ``count_thereshold``.
    count_threshold: UInt32 = Field(0, validation_alias=AliasChoices("count_threshold", "count_thereshold"))
    #: Memory of ``heavyguardian`` / ``cocosketch`` (absent: see the module docstring).
    memory: ByteSize = 0
    #: ``heavyguardian``'s decay base.
    b: float = Field(0.0, ge=0.0)

    @model_validator(mode="before")
    @classmethod
    def _thresholds(cls, data: Any) -> Any:
        return spelling_aliases(data)

    @model_validator(mode="after")
    def _defaults(self) -> CountMinParams:
        variant = variant_of(0, self.variant)
        update: dict[str, Any] = {"variant": variant}
        if not self.count_threshold:
            update["count_threshold"] = DEFAULT_COUNT_THRESHOLD
        if not self.size_threshold:
            update["size_threshold"] = DEFAULT_SIZE_THRESHOLD
        if variant in BY_WIDTH:
            if self.memory:
                raise ValueError(
                    f"memory sizes the heavyguardian and cocosketch variants; {variant} is sized by width "
                    "and depth: remove memory or choose another variant"
                )
            update["width"] = self.width or DEFAULT_WIDTH
            update["depth"] = self.depth or DEFAULT_DEPTH
        else:
            if variant == "cocosketch":
                depth = self.depth or COCO_DEFAULT_DEPTH
                if depth > 8:
                    raise ValueError(f"depth must be between 1 and 8 for the cocosketch variant, got {depth}")
            if variant == "heavyguardian":
                b = self.b or DEFAULT_B
                if b <= 1.0:
                    raise ValueError(f"b must be greater than 1 (the decay base), got {b!r}; e.g. 1.08")
                update["b"] = b
        return self.model_copy(update=update)


class CountMinKind(SketchKind):
    """``skt_type: 0``: heavy hitters by packets (Type 0) and bytes (Type 1)."""

    name: ClassVar[str] = "countmin"
    title: ClassVar[str] = "CountMin"
    skt_type: ClassVar[int | None] = 0
    params_model: ClassVar[type[Section]] = CountMinParams
    hitter_types: ClassVar[tuple[HitterType, ...]] = (HitterType.SIZE, HitterType.COUNT)
    description: ClassVar[str] = "heavy hitters by packets and bytes"

    def resolve(self, params: Any, flow_bytes: int, element_bytes: int) -> Any:
        # memory-sized variants without memory: the footprint the former default (mv) had at this
        # width x depth, so a task switched to the new default keeps its memory; else 1 MiB
        if params.variant in BY_WIDTH or params.memory:
            return params
        if params.width:
            memory = params.width * (params.depth or DEFAULT_DEPTH) * bucket_bytes(flow_bytes, "mv")
        else:
            memory = DEFAULT_MEMORY
        return params.model_copy(update={"memory": memory})

    def memory_bytes(self, params: Any, flow_bytes: int, element_bytes: int) -> int:
        variant = params.variant
        if variant in BY_WIDTH:
            return params.depth * params.width * bucket_bytes(flow_bytes, variant)
        mem = params.memory or DEFAULT_MEMORY
        if variant == "cocosketch":
            depth = params.depth or COCO_DEFAULT_DEPTH
            bucket = 8 * (words(flow_bytes) + 1)
            width = max(1, mem // (2 * depth * bucket))
            return 2 * depth * width * bucket
        slot = 8 * (words(flow_bytes) + 2)  # heavyguardian: key words, packets, bytes
        buckets = max(1, mem // (WAYS * slot))
        return buckets * WAYS * slot

    def memory_detail(self, params: Any) -> str:
        if params.variant in BY_WIDTH:
            return f"{params.variant}: depth {params.depth} x width {params.width}"
        if params.width:
            depth = params.depth or DEFAULT_DEPTH
            return f"{params.variant}, sized like mv at depth {depth} x width {params.width}"
        return f"{params.variant}, memory {params.memory}"


KIND = CountMinKind()
