"""``collect`` (a NetSpectra addition): the flow-export collector (NetFlow v5/v9, IPFIX, sFlow v5).

Every key has a default, so a configuration without this section collects on loopback:

.. code-block:: yaml

    collect:
      listen: [udp://127.0.0.1:2055, udp://127.0.0.1:6343]   # the protocol is detected per datagram
      socket_buffer: 32MiB              # SO_RCVBUF asked for each listener (the granted size is logged)
      default_sampling_rate: 1          # for records whose rate nothing else gives; 0: leave unknown
      exporter_sampling_rates:          # per exporter, for exporters that send no rate
        192.0.2.10: 1000
      max_templates: 16384              # overall; and per exporter:
      max_templates_per_exporter: 1024
      pending_max_age: 10s              # data sets waiting for their template
      pending_max_bytes: 8MiB
      pending_max_bytes_per_exporter: 1MiB
      max_exporters: 10000
      max_streams_per_exporter: 256     # observation domains / source ids / sub-agents
      max_interfaces_per_exporter: 4096 # sFlow interface counters kept (latest per ifIndex); and overall:
      max_interfaces: 65536

Sampling-rate precedence (docs/collect.md): the record (or v5 header, sFlow sample), then the
exporter's options data for its observation domain and sampler id, then ``exporter_sampling_rates``,
then ``default_sampling_rate``.
"""

# No `from __future__ import annotations` here: pydantic reads the models' annotations as objects instead
# of evaluating strings when a class is made (~3 ms of every command's start for the configuration's models).
import ipaddress
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from netspectra.config.base import ByteSize, GoDuration, Section, checked_duration, not_a_string

#: Where the collector listens when nothing is configured: NetFlow/IPFIX's and sFlow's usual ports.
DEFAULT_LISTEN: tuple[str, ...] = ("udp://127.0.0.1:2055", "udp://127.0.0.1:6343")
#: A 1-in-N sampling rate.
SamplingRate = Annotated[int, Field(ge=1, le=2**32 - 1)]
_LISTEN_FIX = (
    "write udp://HOST:PORT (or HOST:PORT, [V6]:PORT, :PORT for every interface), e.g. udp://0.0.0.0:2055"
)


def parse_udp_listen(text: str) -> tuple[str, int]:
    """``udp://HOST:PORT``, ``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` as ``(host, port)``.

    ``ValueError`` naming the address otherwise. An empty host means every IPv4 interface; port 0 a
    free port chosen by the kernel (tests: read the bound one from the receiver).
    """
    s = text.strip()
    scheme, sep, rest = s.partition("://")
    if sep:
        if scheme.lower() != "udp":
            raise ValueError(f"listen address {text!r}: only udp:// is supported; {_LISTEN_FIX}")
        s = rest
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {text!r}: no valid port; {_LISTEN_FIX}")
    host = host.strip()
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"listen address {text!r}: unclosed '['; {_LISTEN_FIX}")
        host = host[1:-1]
    host = host or "0.0.0.0"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            msg = f"listen address {text!r}: {host!r} is not an IPv6 address; {_LISTEN_FIX}"
            raise ValueError(msg) from None
    return host, int(port)


def _listen_list(value: object) -> object:
    if isinstance(value, str):  # one address, or several separated by commas (an expanded ${VAR})
        value = [v for v in value.replace(",", " ").split() if v]
    return not_a_string(value)


def _canonical_exporter(text: object) -> str:
    try:
        addr = ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (write an IPv4 or IPv6 exporter address)") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


class CollectConfig(Section):
    """``collect``: listeners, sampling rates and the bounds of the decoder's state."""

    #: UDP listeners; the protocol of each datagram is detected from its first bytes.
    listen: Annotated[tuple[str, ...], BeforeValidator(_listen_list)] = DEFAULT_LISTEN
    #: SO_RCVBUF asked for each listener (the kernel may grant less: it is logged and exported).
    socket_buffer: ByteSize = 32 << 20
    #: Datagrams read per recvmmsg call (the size of a receive batch).
    batch_datagrams: int = Field(256, ge=1, le=4096)
    #: Rate for records whose rate comes from no export and no ``exporter_sampling_rates`` entry;
    #: 0 leaves them at 0 ("unknown"). Either way they are counted and logged once per exporter.
    default_sampling_rate: int = Field(1, ge=0, le=2**32 - 1)
    #: Per exporter address: the rate of its records when the export itself carries none.
    exporter_sampling_rates: dict[str, SamplingRate] = Field(default_factory=dict)
    #: Templates kept overall and per exporter (a template flood is refused beyond them, counted).
    max_templates: int = Field(16384, ge=1, le=1 << 20)
    max_templates_per_exporter: int = Field(1024, ge=1, le=1 << 20)
    #: Data sets that arrive before their template wait this long (export time), then count as dropped.
    pending_max_age: GoDuration = timedelta(seconds=10)
    pending_max_bytes: ByteSize = 8 << 20
    pending_max_bytes_per_exporter: ByteSize = 1 << 20
    #: Distinct exporter addresses, and observation domains per exporter, before datagrams are refused.
    max_exporters: int = Field(10_000, ge=1, le=1 << 22)
    max_streams_per_exporter: int = Field(256, ge=1, le=1 << 16)
    #: sFlow interface counters kept (the latest per exporter and ifIndex: ``/metrics``, summaries), per
    #: exporter and overall; counter records of further interfaces are counted (``interfaces_over_limit``).
    max_interfaces_per_exporter: int = Field(4096, ge=1, le=1 << 20)
    max_interfaces: int = Field(65_536, ge=1, le=1 << 22)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError(f"no listen address; {_LISTEN_FIX}")
        seen: set[tuple[str, int]] = set()
        for a in v:
            hp = parse_udp_listen(a)
            if hp in seen:
                raise ValueError(f"listen address {a!r} is given twice")
            seen.add(hp)
        return v

    @field_validator("pending_max_age")
    @classmethod
    def _pending_max_age(cls, v: timedelta) -> timedelta:
        # (a negative age was accepted silently and acted as 0)
        return checked_duration(v, "write e.g. 10s, or 0 to drop data sets that arrive before their template")

    @field_validator("exporter_sampling_rates", mode="before")
    @classmethod
    def _exporters(cls, v: object) -> object:
        if not isinstance(v, dict):
            raise ValueError("write a mapping of exporter address to sampling rate, e.g. {192.0.2.10: 1000}")
        out: dict[str, object] = {}
        for k, rate in v.items():
            key = _canonical_exporter(k)
            if key in out:
                raise ValueError(f"exporter {key} is given twice")
            out[key] = rate
        return out

    def listen_addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every listener."""
        return [parse_udp_listen(a) for a in self.listen]
