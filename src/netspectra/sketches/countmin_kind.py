"""The ``countmin`` sketch kind (``skt_type: 0``): heavy hitters by packets and by bytes per flow.

Parameters (0 or absent -> the original's default): ``width`` (1 048 576), ``depth`` (3, at most 64),
``size_threshold`` bytes (524 288; also spelt ``size_thereshold``), ``count_threshold`` packets (512;
also ``count_thereshold``), and NetSpectra's ``variant``: ``mv`` (the default, majority vote with
MV-Sketch estimates) or ``original`` (the original's replace rule and query). The implementation is
:class:`netspectra.sketches.countmin.CountMinSketch`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from netspectra.config.base import Section, UInt32
from netspectra.sketches.kind import HitterType, SketchKind

DEFAULT_WIDTH = 1 << 20
DEFAULT_DEPTH = 3
DEFAULT_SIZE_THRESHOLD = 524288
DEFAULT_COUNT_THRESHOLD = 512
MAX_DEPTH = 64


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


class CountMinParams(Section):
    """Parameters of a ``countmin`` task (see the module docstring)."""

    width: UInt32 = 0
    depth: int = Field(0, ge=0, le=MAX_DEPTH)
    #: Heavy-hitter threshold in bytes. Also spelt ``size_thereshold``, as in the original.
    size_threshold: UInt32 = Field(0, validation_alias=AliasChoices("size_threshold", "size_thereshold"))
    #: Threshold in packets. Also ``count_thereshold``.
    count_threshold: UInt32 = Field(0, validation_alias=AliasChoices("count_threshold", "count_thereshold"))
    #: "mv" (default: measured better, see benchmarks/RESULTS.md) or "original" (the original's rules).
    variant: Literal["", "mv", "original"] = ""

    @model_validator(mode="before")
    @classmethod
    def _thresholds(cls, data: Any) -> Any:
        return spelling_aliases(data)

    @model_validator(mode="after")
    def _defaults(self) -> CountMinParams:
        update: dict[str, Any] = {}
        for key, default in (
            ("width", DEFAULT_WIDTH),
            ("depth", DEFAULT_DEPTH),
            ("size_threshold", DEFAULT_SIZE_THRESHOLD),
            ("count_threshold", DEFAULT_COUNT_THRESHOLD),
        ):
            if not getattr(self, key):
                update[key] = default
        return self.model_copy(update=update) if update else self


def bucket_bytes(key_length: int, variant: str) -> int:
    """Bytes of one bucket: two (key words, counter[, bucket total for mv]) pairs of 8-byte words —
    the layout of :class:`~netspectra.sketches.countmin.CountMinSketch`'s table."""
    words = (key_length + 7) // 8
    return 2 * (words + 1 + int(variant != "original")) * 8


class CountMinKind(SketchKind):
    """``skt_type: 0``: heavy hitters by packets (Type 0) and bytes (Type 1)."""

    name: ClassVar[str] = "countmin"
    skt_type: ClassVar[int | None] = 0
    params_model: ClassVar[type[Section]] = CountMinParams
    hitter_types: ClassVar[tuple[HitterType, ...]] = (HitterType.SIZE, HitterType.COUNT)
    impl: ClassVar[str] = "netspectra.sketches.countmin:CountMinSketch"
    title: ClassVar[str] = "CountMin"
    description: ClassVar[str] = "heavy hitters by packets and bytes (majority-vote buckets)"

    def memory_bytes(self, params: Any, flow_bytes: int, element_bytes: int) -> int:
        return params.depth * params.width * bucket_bytes(flow_bytes, params.variant)

    def memory_detail(self, params: Any) -> str:
        return f"depth {params.depth} x width {params.width}"


KIND = CountMinKind()
