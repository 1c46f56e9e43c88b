"""NetFlow v9 / IPFIX templates: parsing template sets, compiling templates, the bounded cache.

A template (or options template) is keyed by its *stream* — exporter address, protocol version and
observation domain / source id, numbered by the decoder — and its template id. The cache keeps
each template compiled into a program of ``(kind, length)`` steps (:mod:`.ie`) in numpy arrays
that the data kernel reads, found through an open-addressing hash table the kernel probes
(:func:`netspectra.collect.nf_kernels.ht_lookup`). Templates arrive rarely (every few seconds to
minutes per exporter), so parsing and insertion are plain Python; decoding data never is.

Rules (RFC 3954 for v9, RFC 7011 for IPFIX):

* a template with the id of a known one replaces it (a *refresh* when the program is the same,
  a *change* otherwise); data decoded before the replacement keeps the old meaning;
* IPFIX withdrawal: a template record with no field withdraws that template id; template id 2
  (template set) or 3 (options template set) with no field withdraws every template, or every
  options template, of the stream;
* refused, and counted: a template whose records could have no byte (a field length of 0 only:
  its data set would never end), more than :data:`MAX_FIELDS` fields or :data:`MAX_STEPS` compiled
  steps, a template id below 256, an options template without scope (IPFIX), or one over the limits
  per exporter / overall (a template flood: memory stays bounded).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from netspectra.collect import ie
from netspectra.collect.nf_kernels import F_OPTIONS, F_R_ICMP, F_R_PKTS, F_R_TCP, F_REVERSE

#: Most fields accepted in one template (real ones have tens; a datagram could declare 16 000).
MAX_FIELDS = 1024
#: Most compiled steps per template (runs of skipped fixed-length fields merge into one step).
MAX_STEPS = 256

_EMPTY = -1
_DELETED = -2
_HASH_MUL = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class TemplateField:
    """One field specifier: IANA/v9 ``type``, ``length`` (65535: variable in IPFIX), enterprise
    number ``pen`` (0: IANA), and whether it is a scope field of an options template."""

    type: int
    length: int
    pen: int = 0
    scope: bool = False


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    """One record of a template set: ``fields`` empty means an IPFIX withdrawal."""

    template_id: int
    fields: tuple[TemplateField, ...]
    options: bool


class TemplateError(ValueError):
    """A template set that could not be read to its end (records before the fault are returned)."""


def parse_template_set(data: bytes, version: int, set_id: int) -> tuple[list[TemplateRecord], str | None]:
    """The template records of one set's body (after the 4-byte set header).

    ``version`` 9 (set id 0 template, 1 options template) or 10 (2, 3). Returns ``(records,
    error)``: ``error`` names the first fault (the records before it are valid), else None. Trailing
    padding (fewer than 4 bytes, or a template id below 256 in v9, whose padding is zeros) ends the
    set normally.
    """
    out: list[TemplateRecord] = []
    n = len(data)
    p = 0
    options = set_id in (1, 3)
    while n - p >= 4:
        tid, a = struct.unpack_from(">HH", data, p)
        if version == 9:
            if tid < 256:
                if any(data[p:]):
                    return out, f"template id {tid} below 256"
                return out, None  # zero padding
            if options:
                if n - p < 6:
                    return out, "options template header cut"
                scope_len, opt_len = a, struct.unpack_from(">H", data, p + 4)[0]
                p += 6
                if scope_len % 4 or opt_len % 4:
                    return (
                        out,
                        f"options template {tid}: scope/option lengths {scope_len}/{opt_len} not 4k",
                    )
                nscope, nfields = scope_len // 4, (scope_len + opt_len) // 4
            else:
                nscope, nfields = 0, a
                p += 4
            if nfields > MAX_FIELDS:
                return out, f"template {tid}: {nfields} fields (at most {MAX_FIELDS})"
            if n - p < 4 * nfields:
                return out, f"template {tid}: {nfields} fields but {n - p} bytes left"
            fields = tuple(
                TemplateField(t, ln, 0, k < nscope)
                for k, (t, ln) in enumerate(struct.iter_unpack(">HH", data[p : p + 4 * nfields]))
            )
            p += 4 * nfields
            if not fields:
                return out, f"template {tid}: no field"
            out.append(TemplateRecord(tid, fields, options))
        else:
            count = a
            p += 4
            nscope = 0
            if options:
                if count == 0:
                    out.append(TemplateRecord(tid, (), True))
                    continue
                if n - p < 2:
                    return out, "options template header cut"
                nscope = struct.unpack_from(">H", data, p)[0]
                p += 2
                if nscope == 0 or nscope > count:
                    return out, f"options template {tid}: scope field count {nscope} of {count}"
            if count > MAX_FIELDS:
                return out, f"template {tid}: {count} fields (at most {MAX_FIELDS})"
            fl: list[TemplateField] = []
            for k in range(count):
                if n - p < 4:
                    return out, f"template {tid}: field {k} cut"
                t, ln = struct.unpack_from(">HH", data, p)
                p += 4
                pen = 0
                if t & 0x8000:
                    if n - p < 4:
                        return out, f"template {tid}: enterprise number of field {k} cut"
                    pen = struct.unpack_from(">I", data, p)[0]
                    p += 4
                    t &= 0x7FFF
                fl.append(TemplateField(t, ln, pen, k < nscope))
            if tid < 256 and count:
                return out, f"template id {tid} below 256"
            out.append(TemplateRecord(tid, tuple(fl), options))
    return out, None


@dataclass(frozen=True, slots=True)
class Program:
    """A compiled template: parallel ``kinds``/``lengths`` steps, the shortest record, flags."""

    kinds: tuple[int, ...]
    lengths: tuple[int, ...]
    min_len: int
    flags: int


def compile_template(fields: tuple[TemplateField, ...], version: int, options: bool) -> Program | str:
    """The program of a template, or the reason it is refused (see the module docstring).

    Options templates compile to a program too (the kernel needs the record length to skip their
    data); their values are read by :func:`parse_options_data`.
    """
    varlen_ok = version == 10
    kinds: list[int] = []
    lengths: list[int] = []
    min_len = 0
    flags = F_OPTIONS if options else 0
    for f in fields:
        varlen = varlen_ok and f.length == ie.VARLEN
        k = ie.K_SKIP if (options or f.scope) else ie.kind_of(f.type, f.pen)
        if k in ie.ADDRESS_KINDS:
            if f.length != ie.ADDRESS_KINDS[k]:
                k = ie.K_SKIP
        elif k in ie.BYTES_KINDS:
            pass
        elif k != ie.K_SKIP and (varlen or not 1 <= f.length <= 8):
            k = ie.K_SKIP
        if k == ie.K_R_PKTS:
            flags |= F_REVERSE | F_R_PKTS
        elif k == ie.K_R_BYTES:
            flags |= F_REVERSE
        elif k == ie.K_R_TCP_FLAGS:
            flags |= F_R_TCP
        elif k == ie.K_R_ICMP_TC:
            flags |= F_R_ICMP
        min_len += 1 if varlen else f.length
        length = ie.VARLEN if varlen else f.length
        if (
            k == ie.K_SKIP
            and not varlen
            and kinds
            and kinds[-1] == ie.K_SKIP
            and lengths[-1] != ie.VARLEN
            and lengths[-1] + length < ie.VARLEN
        ):
            lengths[-1] += length
            continue
        kinds.append(k)
        lengths.append(length)
    if min_len == 0:
        return "records of no byte (every field has length 0)"
    if len(kinds) > MAX_STEPS:
        return f"{len(kinds)} compiled steps (at most {MAX_STEPS})"
    if not flags & F_REVERSE:
        flags &= ~(F_R_TCP | F_R_ICMP)
    return Program(tuple(kinds), tuple(lengths), min_len, flags)


@dataclass(frozen=True, slots=True)
class OptionsValues:
    """What one options data record says: a sampling rate for a sampler, the exporter's boot time."""

    sampler_id: int  # 0 when the record names no sampler: the rate of the whole exporter / domain
    rate: int  # 0: none
    system_init_ms: int  # -1: none


def parse_options_data(
    data: bytes, fields: tuple[TemplateField, ...], version: int
) -> tuple[list[OptionsValues], int, bool]:
    """The options data records of one set body: ``(values, records, complete)``.

    ``values`` holds the records naming a rate or a boot time, ``records`` counts every record read,
    ``complete`` is False when a record overruns the set (the records before it are returned).
    """
    out: list[OptionsValues] = []
    n = len(data)
    min_len = sum(1 if (version == 10 and f.length == ie.VARLEN) else f.length for f in fields)
    nrec = 0
    if min_len == 0:
        return out, 0, False
    p = 0
    while n - p >= min_len:
        sampler, interval, rate, pkt_int, pkt_space, sysinit = 0, 0, 0, 0, 0, -1
        for f in fields:
            ln = f.length
            if version == 10 and ln == ie.VARLEN:
                if p >= n:
                    return out, nrec, False
                ln = data[p]
                p += 1
                if ln == 255:
                    if n - p < 2:
                        return out, nrec, False
                    ln = struct.unpack_from(">H", data, p)[0]
                    p += 2
            if n - p < ln:
                return out, nrec, False
            # v9 scope fields have their own type space (1 system, 2 interface, ...): never IEs
            if f.pen == 0 and 1 <= ln <= 8 and not (version == 9 and f.scope):
                v = int.from_bytes(data[p : p + ln], "big")
                if f.type in ie.OPT_SAMPLING_INTERVAL:
                    interval = v
                elif f.type in ie.OPT_SAMPLER_ID:
                    sampler = v & 0x7FFFFFFFFFFFFFFF
                elif f.type == ie.OPT_PACKET_INTERVAL:
                    pkt_int = v
                elif f.type == ie.OPT_PACKET_SPACE:
                    pkt_space = v
                elif f.type == ie.OPT_SYSTEM_INIT_MS:
                    sysinit = v if v < 9_200_000_000_000 else -1
            p += ln
        nrec += 1
        rate = interval
        if pkt_int > 0:
            rate = (pkt_int + pkt_space) // pkt_int
        rate = min(rate, 0xFFFFFFFF)
        if rate > 0 or sysinit >= 0:
            out.append(OptionsValues(sampler, rate, sysinit))
    return out, nrec, True


def _hash(key: int, mask: int) -> int:
    return (((key * _HASH_MUL) & _MASK64) >> 40) & mask


class TemplateCache:
    """Compiled templates of every stream, bounded per exporter and overall.

    The arrays ``ht_keys``/``ht_vals`` (hash table, key ``stream << 16 | template_id``),
    ``t_kind``/``t_len`` (slot x step), ``t_n``, ``t_min``, ``t_flags`` (per slot) are what the
    kernel reads; they are replaced (not resized in place) when they grow, so read them from the
    cache before each kernel call. Not thread-safe: the decoder serialises access.
    """

    def __init__(self, max_total: int = 16384, max_per_exporter: int = 1024) -> None:
        if max_total < 1 or max_per_exporter < 1:
            raise ValueError("template limits must be positive")
        self.max_total = max_total
        self.max_per_exporter = max_per_exporter
        self._slots = 0
        self._free: list[int] = []
        self._grow_slots(64)
        self._alloc_table(256)
        self._slot_of: dict[tuple[int, int], int] = {}
        self._program: dict[int, Program] = {}
        self._fields: dict[int, tuple[TemplateField, ...]] = {}
        self._owner: dict[int, tuple[int, int]] = {}  # slot -> (exporter, stream)
        self._per_exporter: dict[int, int] = {}
        self._by_stream: dict[int, set[int]] = {}

    # -- storage --------------------------------------------------------------------------------

    def _grow_slots(self, n: int) -> None:
        old = self._slots
        kind = np.zeros((n, MAX_STEPS), np.int16)
        length = np.zeros((n, MAX_STEPS), np.uint16)
        t_n = np.zeros(n, np.int32)
        t_min = np.ones(n, np.int32)
        t_flags = np.zeros(n, np.int32)
        if old:
            kind[:old], length[:old] = self.t_kind, self.t_len
            t_n[:old], t_min[:old], t_flags[:old] = self.t_n, self.t_min, self.t_flags
        self.t_kind, self.t_len, self.t_n, self.t_min, self.t_flags = kind, length, t_n, t_min, t_flags
        self._free.extend(range(n - 1, old - 1, -1))
        self._slots = n

    def _alloc_table(self, cap: int) -> None:
        self.ht_keys = np.full(cap, _EMPTY, np.int64)
        self.ht_vals = np.full(cap, -1, np.int32)
        self._used = 0  # live + deleted entries

    def _ht_insert(self, key: int, slot: int) -> None:
        if (self._used + 1) * 2 > self.ht_keys.shape[0]:
            self._rehash()
        keys = self.ht_keys
        mask = keys.shape[0] - 1
        i = _hash(key, mask)
        while keys[i] >= 0:
            i = (i + 1) & mask
        if keys[i] == _EMPTY:
            self._used += 1
        keys[i] = key
        self.ht_vals[i] = slot

    def _ht_delete(self, key: int) -> None:
        keys = self.ht_keys
        mask = keys.shape[0] - 1
        i = _hash(key, mask)
        for _ in range(keys.shape[0]):
            if keys[i] == key:
                keys[i] = _DELETED
                self.ht_vals[i] = -1
                return
            if keys[i] == _EMPTY:
                return
            i = (i + 1) & mask

    def _rehash(self) -> None:
        live = len(self._slot_of)
        cap = 256
        while cap < 4 * (live + 1):
            cap *= 2
        self._alloc_table(cap)
        for (stream, tid), slot in self._slot_of.items():
            self._ht_insert((stream << 16) | tid, slot)

    # -- queries --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot_of)

    def lookup(self, stream: int, template_id: int) -> int:
        """The slot of a template, or -1."""
        return self._slot_of.get((stream, template_id), -1)

    def program(self, slot: int) -> Program:
        return self._program[slot]

    def fields(self, slot: int) -> tuple[TemplateField, ...]:
        return self._fields[slot]

    def count_for(self, exporter: int) -> int:
        return self._per_exporter.get(exporter, 0)

    def templates_of(self, stream: int) -> list[int]:
        return sorted(self._by_stream.get(stream, ()))

    # -- changes --------------------------------------------------------------------------------

    def add(self, stream: int, exporter: int, record: TemplateRecord, version: int) -> str:
        """Store a template; returns ``added``, ``refreshed`` (same program), ``changed``,
        ``over_limit`` or ``invalid: <reason>``."""
        prog = compile_template(record.fields, version, record.options)
        if isinstance(prog, str):
            return f"invalid: {prog}"
        key = (stream, record.template_id)
        slot = self._slot_of.get(key)
        if slot is not None:
            same = self._program[slot] == prog and self._fields[slot] == record.fields
            self._write(slot, prog, record.fields)
            return "refreshed" if same else "changed"
        if (
            len(self._slot_of) >= self.max_total
            or self._per_exporter.get(exporter, 0) >= self.max_per_exporter
        ):
            return "over_limit"
        if not self._free:
            self._grow_slots(min(self._slots * 2, self.max_total))
        slot = self._free.pop()
        self._write(slot, prog, record.fields)
        # into the hash table first: a rehash there reinserts what _slot_of holds, so the new key
        # must not be in it yet (else it would be in the table twice)
        self._ht_insert((stream << 16) | record.template_id, slot)
        self._slot_of[key] = slot
        self._owner[slot] = (exporter, stream)
        self._per_exporter[exporter] = self._per_exporter.get(exporter, 0) + 1
        self._by_stream.setdefault(stream, set()).add(record.template_id)
        return "added"

    def _write(self, slot: int, prog: Program, fields: tuple[TemplateField, ...]) -> None:
        n = len(prog.kinds)
        self.t_kind[slot, :n] = prog.kinds
        self.t_len[slot, :n] = prog.lengths
        self.t_n[slot] = n
        self.t_min[slot] = prog.min_len
        self.t_flags[slot] = prog.flags
        self._program[slot] = prog
        self._fields[slot] = fields

    def withdraw(self, stream: int, template_id: int) -> bool:
        """Forget one template; False if it was not known."""
        slot = self._slot_of.pop((stream, template_id), None)
        if slot is None:
            return False
        exporter, _ = self._owner.pop(slot)
        self._per_exporter[exporter] -= 1
        if not self._per_exporter[exporter]:
            del self._per_exporter[exporter]
        tids = self._by_stream[stream]
        tids.discard(template_id)
        if not tids:
            del self._by_stream[stream]
        del self._program[slot]
        del self._fields[slot]
        self.t_n[slot] = 0
        self.t_flags[slot] = 0
        self._ht_delete((stream << 16) | template_id)
        self._free.append(slot)
        return True

    def withdraw_all(self, stream: int, options: bool) -> int:
        """Forget every template (``options`` False) or every options template of a stream."""
        n = 0
        for tid in self.templates_of(stream):
            slot = self._slot_of[(stream, tid)]
            if bool(self._program[slot].flags & F_OPTIONS) == options and self.withdraw(stream, tid):
                n += 1
        return n
