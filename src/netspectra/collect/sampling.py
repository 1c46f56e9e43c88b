"""The sampling rate of every record, by a fixed precedence, never silently 1.

For each record, the first source that knows a rate wins (``sampling_source`` says which):

1. the record itself (``RATE_RECORD``): NetFlow v9/IPFIX samplingInterval / samplerRandomInterval
   fields, the NetFlow v5 header's sampling interval, the sFlow sample's sampling rate;
2. options data of the exporter (``RATE_OPTIONS``): the rate announced for the record's stream
   (exporter, version, observation domain) and sampler id (samplerId / selectorId field of the
   record), else the rate announced without a sampler id (sampler 0) for that stream — as Akvorado
   and GoFlow2 key them;
3. ``collect.exporter_sampling_rates`` (``RATE_CONFIG``) for the exporter's address;
4. ``collect.default_sampling_rate`` (``RATE_DEFAULT``), unless it is 0: then the rate stays 0
   (``RATE_UNKNOWN``).

Records reaching 4 are counted per exporter (``records_without_sampling_rate``) and logged once per
exporter. Resolution is vectorised: one dictionary lookup per distinct (stream, sampler) or exporter
in a batch.
"""

from __future__ import annotations

import numpy as np

from netspectra.collect.addr import to16
from netspectra.collect.records import RATE_CONFIG, RATE_DEFAULT, RATE_OPTIONS, RATE_UNKNOWN

#: Most options rates kept (stream, sampler) pairs: a hostile exporter cannot grow the table forever.
MAX_OPTION_RATES = 65536


class SamplingRates:
    """Options-data rates learnt from exporters, and the configured fallbacks."""

    def __init__(self, default_rate: int = 1, exporter_rates: dict[str, int] | None = None) -> None:
        self.default_rate = int(default_rate)
        self._config: dict[bytes, int] = {to16(k): int(v) for k, v in (exporter_rates or {}).items()}
        self._options: dict[tuple[int, int], int] = {}

    def set_options_rate(self, stream: int, sampler_id: int, rate: int) -> None:
        """Remember the rate an exporter's options data announced (0 < rate < 2**32)."""
        key = (stream, sampler_id & 0xFFFFFFFF)
        if key in self._options or len(self._options) < MAX_OPTION_RATES:
            self._options[key] = rate

    def options_rate(self, stream: int, sampler_id: int = 0) -> int:
        """The options-data rate of a stream and sampler (falling back to sampler 0), or 0."""
        return self._options.get((stream, sampler_id & 0xFFFFFFFF)) or self._options.get((stream, 0), 0)

    def resolve(
        self,
        rate: np.ndarray,
        source: np.ndarray,
        row_stream: np.ndarray,
        row_sampler: np.ndarray,
        registry: object,
    ) -> None:
        """Fill ``rate``/``source`` in place where the record carried no rate (``source == 0``)."""
        need = np.flatnonzero(source == RATE_UNKNOWN)
        if not need.size:
            return
        if self._options:
            st = row_stream[need].astype(np.int64)
            sm = row_sampler[need]
            key = (st << 32) | np.where(sm >= 0, sm & 0xFFFFFFFF, 0)
            uniq, inv = np.unique(key, return_inverse=True)
            found = np.array([self.options_rate(int(k) >> 32, int(k) & 0xFFFFFFFF) for k in uniq], np.int64)
            r = found[inv]
            hit = r > 0
            rate[need[hit]] = r[hit]
            source[need[hit]] = RATE_OPTIONS
            need = need[~hit]
            if not need.size:
                return
        if self._config:
            eids = registry.stream_exporter[row_stream[need]]  # type: ignore[attr-defined]
            uniq, inv = np.unique(eids, return_inverse=True)
            found = np.array(
                [self._config.get(registry.addr[int(e)].tobytes(), 0) for e in uniq],  # type: ignore[attr-defined]
                np.int64,
            )
            r = found[inv]
            hit = r > 0
            rate[need[hit]] = r[hit]
            source[need[hit]] = RATE_CONFIG
            need = need[~hit]
            if not need.size:
                return
        if self.default_rate > 0:
            rate[need] = self.default_rate
            source[need] = RATE_DEFAULT
        else:
            rate[need] = 0
