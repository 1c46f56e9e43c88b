"""Turning task snapshots into files and text: address formatting and the flow table (Arrow, Parquet, CSV)."""

from netspectra.output.addr import ips_to_arrow, ips_to_text, is_ipv4_mapped, parse_ip, parse_ips
from netspectra.output.flow_table import FLOW_TABLE_SCHEMA, write_csv, write_parquet

__all__ = [
    "FLOW_TABLE_SCHEMA",
    "ips_to_arrow",
    "ips_to_text",
    "is_ipv4_mapped",
    "parse_ip",
    "parse_ips",
    "write_csv",
    "write_parquet",
]
