"""The ``superspread`` sketch kind (``skt_type: 1``): the spread (distinct elements) of every flow.

Parameters (0 or absent -> the original's default): ``width`` (1 048 576, at most 2^31), ``depth`` (3,
at most 64), ``count_threshold`` spread (4096; also spelt ``count_thereshold``), ``m`` registers per
cell (128, at most 65 536), ``size`` bits per register (5, at most 32), ``base`` of the sampling
probability (0.5, in (0, 1)), ``b`` decay base (1.08, > 1). ``element_fields`` are required. The
implementation is :class:`netspectra.sketches.superspread.SuperSpreadSketch`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AliasChoices, Field, model_validator

from netspectra.config.base import Section
from netspectra.sketches.countmin_kind import spelling_aliases
from netspectra.sketches.kind import HitterType, SketchKind

DEFAULTS: dict[str, int | float] = {
    "width": 1 << 20,
    "depth": 3,
    "count_threshold": 4096,
    "m": 128,
    "size": 5,
    "base": 0.5,
    "b": 1.08,
}


class SuperSpreadParams(Section):
    """Parameters of a ``superspread`` task (see the module docstring for defaults and ranges)."""

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

    @model_validator(mode="before")
    @classmethod
    def _thresholds(cls, data: Any) -> Any:
        return spelling_aliases(data)

    @model_validator(mode="after")
    def _defaults(self) -> SuperSpreadParams:
        update = {k: v for k, v in DEFAULTS.items() if not getattr(self, k)}
        out = self.model_copy(update=update) if update else self
        if out.b <= 1.0:
            raise ValueError(f"b must be greater than 1 (the decay base), got {out.b!r}; e.g. 1.08")
        return out


class SuperSpreadKind(SketchKind):
    """``skt_type: 1``: super-spreaders (Type 2) by distinct ``element_fields`` per flow."""

    name: ClassVar[str] = "superspread"
    skt_type: ClassVar[int | None] = 1
    params_model: ClassVar[type[Section]] = SuperSpreadParams
    hitter_types: ClassVar[tuple[HitterType, ...]] = (HitterType.SPREAD,)
    uses_elements: ClassVar[bool] = True
    impl: ClassVar[str] = "netspectra.sketches.superspread:SuperSpreadSketch"
    title: ClassVar[str] = "SuperSpread"
    description: ClassVar[str] = "super-spreaders: distinct elements per flow (SuperSpread)"

    def memory_bytes(self, params: Any, flow_bytes: int, element_bytes: int) -> int:
        # per cell: m one-byte registers, p (float64), the flow key, its value (uint32), two cell seeds
        return params.depth * params.width * (params.m + 8 + flow_bytes + 4 + 8)

    def memory_detail(self, params: Any) -> str:
        return f"depth {params.depth} x width {params.width}, m {params.m}"


KIND = SuperSpreadKind()
