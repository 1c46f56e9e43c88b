"""What a capture reader counted: records, bytes, decoder outcomes, link types, pcapng structure.

Every counter is updated from whole arrays (``np.bincount``, ``np.unique``, sums) once per window
or batch, never per packet in Python. :meth:`CaptureStats.merge` adds another file's statistics,
so one object can describe a whole run over many files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from netspectra.capture import status as st


def _zero_status() -> dict[str, int]:
    return {name: 0 for name in st.NAMES.values()}


def _add_counts(into: dict[int, int], keys: np.ndarray, counts: np.ndarray) -> None:
    for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
        into[k] = into.get(k, 0) + c


@dataclass
class CaptureStats:
    """Counters of one or more capture files (all counts are exact).

    * ``records``/``captured_bytes``: every packet record of the file (IP or not).
    * ``wire_bytes``: the wire lengths of every record except those claiming more than
      :data:`~netspectra.capture.status.MAX_WIRE_LENGTH` (damaged records, counted under
      ``implausible_length`` and in no byte total).
    * ``ip_packets``/``ip_bytes``: rows that went into batches (wire length).
      ``ip_packets + skipped == records`` always holds.
    * ``snaplen_cut``: records with ``caplen < wirelen`` (implausible lengths excluded).
    * ``by_status``: records by decoder outcome name (:data:`netspectra.capture.status.NAMES`,
      every name present, zeros included); ``truncated`` and ``skipped`` sum its
      ``TRUNCATED_CODES``/``SKIPPED_CODES``.
    * ``non_ip``: records whose payload is not IP, by aux value (ethertype, or address family /
      PPP protocol for link types that carry one). ``linktype_unsupported``: by link type.
    * ``linktypes``: records by link type. ``sections``/``interfaces``/``other_blocks``: pcapng
      section header blocks, interface description blocks, skipped blocks of other types.
    * ``ts_overflow``: pcapng packets whose time does not fit int64 ns: clamped, never wrapped, to
      ``2**63 - 1`` (after 2262) or ``-(2**63 - 1)`` (before 1677, from a negative ``if_tsoffset``).
    * ``first_ts_ns``/``last_ts_ns``: smallest and largest record timestamp (``None`` if none).
    * ``warnings``: one line per thing the reader accepted that is not normal (trailing garbage
      after gzip data), naming the file and the offset.
    """

    files: int = 0
    records: int = 0
    wire_bytes: int = 0
    captured_bytes: int = 0
    ip_packets: int = 0
    ip_bytes: int = 0
    snaplen_cut: int = 0
    by_status: dict[str, int] = field(default_factory=_zero_status)
    non_ip: dict[int, int] = field(default_factory=dict)
    linktype_unsupported: dict[int, int] = field(default_factory=dict)
    linktypes: dict[int, int] = field(default_factory=dict)
    sections: int = 0
    interfaces: int = 0
    other_blocks: int = 0
    ts_overflow: int = 0
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> int:
        """Records whose capture ended inside a header the flow key needs (``TRUNCATED_CODES``)."""
        return sum(self.by_status.get(st.NAMES[c], 0) for c in st.TRUNCATED_CODES)

    @property
    def skipped(self) -> int:
        """Records that belong to no flow (``SKIPPED_CODES``)."""
        return sum(self.by_status.get(st.NAMES[c], 0) for c in st.SKIPPED_CODES)

    @property
    def implausible_length(self) -> int:
        """Records claiming a wire length above ``MAX_WIRE_LENGTH`` (in ``skipped``, in no byte total)."""
        return self.by_status.get(st.NAMES[st.IMPLAUSIBLE_LENGTH], 0)

    def as_dict(self) -> dict[str, Any]:
        """Every counter as plain JSON-able values, for summaries, logs and metrics.

        The dataclass fields under their names (``non_ip``, ``linktype_unsupported`` and
        ``linktypes`` keyed by their integer value, in ascending order), plus the derived
        ``truncated``, ``skipped`` and ``implausible_length``.
        """
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["by_status"] = dict(self.by_status)
        for name in ("non_ip", "linktype_unsupported", "linktypes"):
            d[name] = dict(sorted(getattr(self, name).items()))
        d["warnings"] = list(self.warnings)
        d["truncated"] = self.truncated
        d["skipped"] = self.skipped
        d["implausible_length"] = self.implausible_length
        return d

    def add_records(
        self, caplen: np.ndarray, wirelen: np.ndarray, ts_ns: np.ndarray, linktype: np.ndarray
    ) -> None:
        """Count one window's records (the ``rec_*`` arrays cut to the records written)."""
        n = int(caplen.shape[0])
        if n == 0:
            return
        self.records += n
        self.captured_bytes += int(caplen.sum(dtype=np.int64))
        if int(wirelen.max()) > st.MAX_WIRE_LENGTH:
            # Damaged records (the decoder counts them as IMPLAUSIBLE_LENGTH): in no byte total.
            plausible = wirelen <= st.MAX_WIRE_LENGTH
            self.wire_bytes += int(wirelen.sum(dtype=np.int64, where=plausible))
            self.snaplen_cut += int(np.count_nonzero((caplen < wirelen) & plausible))
        else:
            self.wire_bytes += int(wirelen.sum(dtype=np.int64))
            self.snaplen_cut += int(np.count_nonzero(caplen < wirelen))
        lo, hi = int(linktype.min()), int(linktype.max())
        if lo == hi:  # the common case: one link type per file, no sort needed
            self.linktypes[lo] = self.linktypes.get(lo, 0) + n
        else:
            _add_counts(self.linktypes, *np.unique(linktype, return_counts=True))
        t0, t1 = int(ts_ns.min()), int(ts_ns.max())
        self.first_ts_ns = t0 if self.first_ts_ns is None else min(self.first_ts_ns, t0)
        self.last_ts_ns = t1 if self.last_ts_ns is None else max(self.last_ts_ns, t1)

    def add_decoded(self, status: np.ndarray, aux: np.ndarray, length: np.ndarray) -> None:
        """Count one decoder call: per-record ``status``/``aux`` and the ``length`` of its rows."""
        if status.shape[0]:
            n = int(status.shape[0])
            ok = int(np.count_nonzero(status == st.OK))
            if ok == n:  # the common case: one compare, where bincount widens every status to intp (~5x)
                counts = np.zeros(st.N_STATUS, np.int64)
                counts[st.OK] = n
            else:
                counts = np.bincount(status, minlength=st.N_STATUS)
            for code, name in st.NAMES.items():
                if counts[code]:
                    self.by_status[name] = self.by_status.get(name, 0) + int(counts[code])
            for code, into in (
                (st.NON_IP, self.non_ip),
                (st.LINKTYPE_UNSUPPORTED, self.linktype_unsupported),
            ):
                if counts[code]:
                    _add_counts(into, *np.unique(aux[status == code], return_counts=True))
        self.ip_packets += int(length.shape[0])
        self.ip_bytes += int(length.sum(dtype=np.int64))

    def merge(self, other: CaptureStats) -> CaptureStats:
        """Add ``other``'s counters into this object (in place) and return it."""
        for name in (
            "files",
            "records",
            "wire_bytes",
            "captured_bytes",
            "ip_packets",
            "ip_bytes",
            "snaplen_cut",
            "sections",
            "interfaces",
            "other_blocks",
            "ts_overflow",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.warnings.extend(other.warnings)
        for mine, theirs in (
            (self.by_status, other.by_status),
            (self.non_ip, other.non_ip),
            (self.linktype_unsupported, other.linktype_unsupported),
            (self.linktypes, other.linktypes),
        ):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        if other.first_ts_ns is not None:
            self.first_ts_ns = (
                other.first_ts_ns if self.first_ts_ns is None else min(self.first_ts_ns, other.first_ts_ns)
            )
        if other.last_ts_ns is not None:
            self.last_ts_ns = (
                other.last_ts_ns if self.last_ts_ns is None else max(self.last_ts_ns, other.last_ts_ns)
            )
        return self
