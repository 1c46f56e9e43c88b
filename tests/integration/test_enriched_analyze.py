"""``netspectra analyze`` with enrichment and a rollup task, on real captures and the real MMDB test
databases (``../shared/data/mmdb``): every packet's AS and country as the maintained reader
(``maxminddb``) answers them, network names and overrides as the configuration says, counted once per
packet into every resolution, in the traffic's own time; a missing or damaged database reported once and
counted, the analysis going on without it."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from netspectra.capture.reader import CaptureReader
from netspectra.cli import main as cli
from netspectra.output.addr import ips_to_text

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "data" / "captures"
MMDB = Path("/work/shared/data/mmdb")
if not MMDB.exists():
    MMDB = ROOT / "tests" / "data" / "mmdb"
ASN_DB = MMDB / "GeoLite2-ASN-Test.mmdb"
COUNTRY_DB = MMDB / "GeoLite2-City-Test.mmdb"  # a City database serves as the country database
FILES = ["gnutella.pcap", "sites.pcapng", "communityid.pcap.gz"]
LAN = ipaddress.ip_network("10.0.0.0/8")

pytestmark = pytest.mark.skipif(not ASN_DB.exists(), reason=f"the MMDB test databases are not at {MMDB}")

runner = CliRunner()


def write_config(tmp_path: Path, asn_db: Path, **rollup: Any) -> Path:
    doc = {
        "aggregator": {
            "types": ["exact", "rollup"],
            "exact": {
                "tasks": [
                    {"name": "five", "key_fields": ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]}
                ]
            },
            "rollup": {
                "tasks": [
                    {
                        "name": "traffic",
                        "dimensions": [
                            "Protocol",
                            "SrcAS",
                            "DstAS",
                            "SrcCountry",
                            "DstCountry",
                            "SrcNetName",
                        ],
                        **rollup,
                    }
                ]
            },
        },
        "enrichment": {
            "geoip": {"asn_database": str(asn_db), "country_database": str(COUNTRY_DB)},
            # the LAN is named, and placed in FR (an override: the databases know nothing of 10/8)
            "networks": {str(LAN): {"name": "lan", "country": "FR"}},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def reference() -> tuple[dict[str, Counter[str]], int, int]:
    """Per dimension, bytes per value, from the capture's packets one by one with the maintained reader."""
    asn = maxminddb.open_database(str(ASN_DB))
    country = maxminddb.open_database(str(COUNTRY_DB))
    cache: dict[str, tuple[str, str, str]] = {}

    def look(ip: str) -> tuple[str, str, str]:
        got = cache.get(ip)
        if got is None:
            a = asn.get(ip) or {}
            c = country.get(ip) or {}
            cc = (c.get("country") or {}).get("iso_code", "")
            addr = ipaddress.ip_address(ip)
            inside = addr.version == 4 and addr in LAN
            got = cache[ip] = (
                str(a.get("autonomous_system_number", 0)),
                "FR" if inside else cc,
                "lan" if inside else "",
            )
        return got

    out: dict[str, Counter[str]] = {
        d: Counter() for d in ("SrcAS", "DstAS", "SrcCountry", "DstCountry", "SrcNetName")
    }
    packets = total = 0
    for name in FILES:
        for b in CaptureReader(CAPTURES / name):
            for src, dst, length in zip(
                ips_to_text(b.src_ip), ips_to_text(b.dst_ip), b.length.tolist(), strict=True
            ):
                s, d = look(src), look(dst)
                out["SrcAS"][s[0]] += length
                out["DstAS"][d[0]] += length
                out["SrcCountry"][s[1]] += length
                out["DstCountry"][d[1]] += length
                out["SrcNetName"][s[2]] += length
                packets += 1
                total += length
    return out, packets, total


def test_enriched_analyze_matches_the_reader_packet_by_packet(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ASN_DB)
    out = tmp_path / "out"
    res = runner.invoke(
        cli.app,
        [
            "analyze",
            "-c",
            str(cfg),
            *(str(CAPTURES / f) for f in FILES),
            "--json",
            "--top",
            "10000",
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    want, packets, total = reference()
    assert packets == doc["ip_packets"]
    (task,) = doc["rollup_tasks"]
    assert (task["packets"], task["bytes"]) == (packets, total)
    for dim, values in want.items():
        got = {v["value"]: v["bytes"] for v in task["top"][dim]}
        assert got == {k: v for k, v in values.items() if v}, dim
    assert len([k for k in want["SrcAS"] if k != "0"]) >= 5  # the test data does reach the databases
    assert want["SrcCountry"]["FR"] > 0
    # the enrichment summary: every row once, both databases loaded
    e = doc["enrichment"]
    assert e["rows"] == packets and e["unenriched_rows"] == {"asn": 0, "country": 0}
    assert e["databases"]["asn"]["loaded"] and e["databases"]["country"]["loaded"]
    assert e["columns"] == ["SrcAS", "SrcCountry", "SrcNetName", "DstAS", "DstCountry"]
    # --out: one row per resolution, bucket and dimensions, in the traffic's own time
    table = pq.read_table(out / "traffic.parquet")
    for res_label in ("1m", "5m", "1h"):
        part = table.filter(pc.equal(table["Resolution"], res_label))
        assert pc.sum(part["Packets"]).as_py() == packets and pc.sum(part["Bytes"]).as_py() == total
    buckets = table.filter(pc.equal(table["Resolution"], "1m"))["Bucket"].cast("int64").to_numpy()
    # gnutella.pcap is from 1970 (its clock), sites.pcapng from 2011: both timelines kept as they are
    years = {int(np.datetime64(int(b), "ns").astype("datetime64[Y]").astype(int)) + 1970 for b in buckets}
    assert 1970 in years and len(years) >= 2


def test_the_report_without_out_is_the_report_with_it(tmp_path: Path) -> None:
    """Without ``--out`` (no writer, no snapshot callback) the engine's final snapshot of the rollup task
    reaches no one: the task counts its rows instead of making them (RollupTask.discard). The report
    (rows per resolution, totals, top values) is the one of a run with ``--out``, whose files hold that
    many rows."""
    cfg = write_config(tmp_path, ASN_DB)
    docs = []
    for out in (None, tmp_path / "out"):
        res = runner.invoke(
            cli.app,
            ["analyze", "-c", str(cfg), *(str(CAPTURES / f) for f in FILES), "--json", "--top", "50"]
            + (["--out", str(out)] if out is not None else []),
            catch_exceptions=False,
        )
        assert res.exit_code == 0, res.output
        docs.append(json.loads(res.stdout))
    (task,) = docs[0]["rollup_tasks"]
    assert task == docs[1]["rollup_tasks"][0]
    table = pq.read_table(tmp_path / "out" / "traffic.parquet")
    for res_label, n in task["rows"].items():
        assert n > 0 and table.filter(pc.equal(table["Resolution"], res_label)).num_rows == n


@pytest.mark.parametrize(
    ("database", "says"),
    [("missing-GeoLite2-ASN.mmdb", "no such file"), ("MaxMind-DB-test-broken-pointers-24.mmdb", "damaged")],
)
def test_a_missing_or_damaged_database_is_reported_once_and_counted(
    tmp_path: Path, database: str, says: str
) -> None:
    cfg = write_config(tmp_path, MMDB / database)
    res = runner.invoke(cli.app, ["analyze", "-c", str(cfg), str(CAPTURES / "gnutella.pcap"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    e = doc["enrichment"]
    assert e["unenriched_rows"]["asn"] == doc["ip_packets"] == e["rows"]
    assert e["unenriched_rows"]["country"] == 0  # the other database works
    assert not e["databases"]["asn"]["loaded"] and says in e["databases"]["asn"]["error"]
    (task,) = doc["rollup_tasks"]
    assert [v["value"] for v in task["top"]["SrcAS"]] == ["0"]  # unknown, never a wrong answer
    assert {v["value"] for v in task["top"]["SrcNetName"]} == {"", "lan"}
    # said once: by the configuration's warning (a path that is no file: "enrichment.geoip.asn_database:
    # ...") or by the stage (a damaged file: "enrichment: asn database ..."), not by both
    assert res.stderr.count("asn database") + res.stderr.count("asn_database") == 1, res.stderr


def test_analyze_terminal_report_shows_the_words(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ASN_DB)
    res = runner.invoke(cli.app, ["analyze", "-c", str(cfg), str(CAPTURES / "gnutella.pcap"), "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "Top SrcAS by bytes — task traffic" in res.stdout and "Top SrcNetName by bytes" in res.stdout
    assert "Enrichment" in res.stdout and "asn database" in res.stdout
    assert "Rows without asn" not in res.stdout  # the database was loaded the whole run
    assert "Traffic timeline (traffic)" in res.stdout
