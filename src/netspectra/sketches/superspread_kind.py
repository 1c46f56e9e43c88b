"""The ``superspread`` sketch kind (``skt_type: 1``): the spread (distinct elements) of every flow.

``variant`` chooses the algorithm (the one table is :mod:`netspectra.sketches.variants`):

==================  ==========================================================================
``spreadkeeper``    the default: a duplicate filter with unbiased weights + a HeavyKeeper flow table
``original``        SuperSpread as the original, bit-exact
``spreadsketch``    SpreadSketch (INFOCOM 2020), exactly mergeable, a baseline
==================  ==========================================================================

Parameters (0 or absent -> the default): ``count_threshold`` spread (4096; also spelt
``count_thereshold``) for every variant. ``original``: ``width`` (1 048 576, at most 2^31), ``depth``
(3, at most 64), ``m`` registers per cell (128, at most 65 536), ``size`` bits per register (5, at most
32), ``base`` of the sampling probability (0.5, in (0, 1)), ``b`` decay base (1.08, > 1).
``spreadkeeper``: ``memory`` (absent: the memory ``original`` takes at the configured ``width`` x
``depth`` with ``m`` registers, else 4 MiB) and ``b`` (1.08, > 1). ``spreadsketch``: ``memory`` (absent:
sized by ``width``, else 4 MiB), ``depth`` (2, at most 16), ``m`` (32, 4 to 4096). ``element_fields`` are
required.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AliasChoices, Field, model_validator

from netspectra.config.base import ByteSize, Section
from netspectra.sketches.countmin_kind import spelling_aliases, variant_of, words
from netspectra.sketches.kind import HitterType, SketchKind

DEFAULTS: dict[str, int | float] = {
    "width": 1 << 20,
    "depth": 3,
    "m": 128,
    "size": 5,
    "base": 0.5,
    "b": 1.08,
}
DEFAULT_THRESHOLD = 4096
SPREADKEEPER_MEMORY = 4 << 20
SPREADKEEPER_WAYS = 8
SPREADKEEPER_FILTER_SHARE = 0.5
SPREADSKETCH_MEMORY = 4 << 20
SPREADSKETCH_DEPTH = 2
SPREADSKETCH_M = 32


class SuperSpreadParams(Section):
    """Parameters of a ``superspread`` task (see the module docstring for defaults and ranges)."""

    #: The algorithm; absent -> ``spreadkeeper``. The effective configuration shows the resolved name.
    variant: str = ""
    width: int = Field(0, ge=0, le=1 << 31)
    depth: int = Field(0, ge=0, le=64)
    #: Spread threshold (distinct elements). Also spelt ``count_thereshold``, as in the original.
    count_threshold: int = Field(
        0, ge=0, le=2**32 - 1, validation_alias=AliasChoices("count_threshold", "count_thereshold")
    )
    m: int = Field(0, ge=0, le=1 << 16)
    size: int = Field(0, ge=0, le=32)
    base: float = Field(0.0, ge=0.0, lt=1.0)
    b: float = Field(0.0, ge=0.0)
    #: Memory of ``spreadkeeper`` / ``spreadsketch`` (absent: see the module docstring).
    memory: ByteSize = 0

    @model_validator(mode="before")
    @classmethod
    def _thresholds(cls, data: Any) -> Any:
        return spelling_aliases(data)

    @model_validator(mode="after")
    def _defaults(self) -> SuperSpreadParams:
        variant = variant_of(1, self.variant)
        update: dict[str, Any] = {
            "variant": variant,
            "count_threshold": self.count_threshold or DEFAULT_THRESHOLD,
        }
        if variant == "original":
            if self.memory:
                raise ValueError(
                    "memory sizes the spreadkeeper and spreadsketch variants; original is sized by width, "
                    "depth and m: remove memory or choose another variant"
                )
            update.update({k: v for k, v in DEFAULTS.items() if not getattr(self, k)})
        elif variant == "spreadkeeper":
            update["b"] = self.b or DEFAULTS["b"]
        else:  # spreadsketch
            depth, m = self.depth or SPREADSKETCH_DEPTH, self.m or SPREADSKETCH_M
            if depth > 16:
                raise ValueError(f"depth must be between 1 and 16 for the spreadsketch variant, got {depth}")
            if not 4 <= m <= 4096:
                raise ValueError(f"m must be between 4 and 4096 for the spreadsketch variant, got {m}")
            update.update({"depth": depth, "m": m})
        out = self.model_copy(update=update)
        if variant != "spreadsketch" and out.b and out.b <= 1.0:
            raise ValueError(f"b must be greater than 1 (the decay base), got {out.b!r}; e.g. 1.08")
        return out


class SuperSpreadKind(SketchKind):
    """``skt_type: 1``: super-spreaders (Type 2) by distinct ``element_fields`` per flow."""

    name: ClassVar[str] = "superspread"
    title: ClassVar[str] = "SuperSpread"
    skt_type: ClassVar[int | None] = 1
    params_model: ClassVar[type[Section]] = SuperSpreadParams
    hitter_types: ClassVar[tuple[HitterType, ...]] = (HitterType.SPREAD,)
    uses_elements: ClassVar[bool] = True
    description: ClassVar[str] = "super-spreaders: distinct elements per flow"

    def resolve(self, params: Any, flow_bytes: int, element_bytes: int) -> Any:
        # spreadkeeper without memory: the footprint of the original at this width x depth, else 4 MiB
        if params.variant != "spreadkeeper" or params.memory:
            return params
        if params.width:
            memory = params.width * (params.depth or 3) * ((params.m or 128) + flow_bytes + 20)
        else:
            memory = SPREADKEEPER_MEMORY
        return params.model_copy(update={"memory": memory})

    def memory_bytes(self, params: Any, flow_bytes: int, element_bytes: int) -> int:
        variant = params.variant
        if variant == "original":
            # per cell: m one-byte registers, p (float64), the flow key, its value (uint32), two cell seeds
            return params.depth * params.width * (params.m + flow_bytes + 20)
        if variant == "spreadsketch":
            bucket = params.m + 8 * words(flow_bytes) + 8
            if params.memory or not params.width:
                width = max(1, (params.memory or SPREADSKETCH_MEMORY) // (params.depth * bucket))
            else:
                width = params.width
            return params.depth * width * bucket
        mem = params.memory or SPREADKEEPER_MEMORY  # spreadkeeper: the filter, then the flow table
        filter_words = max(1, int(mem * SPREADKEEPER_FILTER_SHARE) // 8)
        slot = 8 * (words(flow_bytes) + 1)
        buckets = max(1, (mem - 8 * filter_words) // (SPREADKEEPER_WAYS * slot))
        return 8 * filter_words + buckets * SPREADKEEPER_WAYS * slot

    def memory_detail(self, params: Any) -> str:
        if params.variant == "original":
            return f"original: depth {params.depth} x width {params.width}, m {params.m}"
        if params.variant == "spreadkeeper" and params.width:
            return (
                f"spreadkeeper, sized like original at depth {params.depth or 3} x width {params.width}, "
                f"m {params.m or 128}"
            )
        if params.variant == "spreadsketch" and not params.memory:
            return f"spreadsketch: depth {params.depth} x width {params.width}, m {params.m}"
        return f"{params.variant}, memory {params.memory}"


KIND = SuperSpreadKind()
