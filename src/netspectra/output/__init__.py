"""Turning task snapshots into files and text: address formatting and the flow table (Arrow, Parquet, CSV).

Names are exported lazily: the time formatting the reports use must not load Parquet and CSV support.
"""

from netspectra.lazy import lazy_exports

_WHERE = {
    "FLOW_TABLE_SCHEMA": "netspectra.output.flow_table",
    "write_csv": "netspectra.output.flow_table",
    "write_parquet": "netspectra.output.flow_table",
    "ips_to_arrow": "netspectra.output.addr",
    "ips_to_text": "netspectra.output.addr",
    "is_ipv4_mapped": "netspectra.output.addr",
    "parse_ip": "netspectra.output.addr",
    "parse_ips": "netspectra.output.addr",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
