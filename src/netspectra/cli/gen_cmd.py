"""``netspectra gen``: write a synthetic CAIDA-like header trace and its ground truth."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from netspectra.cli.common import ConfigOption, console, err_console, fail

#: ``netspectra.gen.synth.DEFAULT_START`` as text (the generator is imported only when it runs).
DEFAULT_START_TEXT = "2024-01-01T00:00:00Z"

log = logging.getLogger(__name__)

_TRAFFIC = "Traffic"
_PLANTED = "Planted entities"
_OUTPUT = "Output"


def gen(
    out: Annotated[
        Path,
        typer.Argument(
            help="The pcap file to write (replaced if it exists).",
            dir_okay=False,
            show_default=False,
            metavar="OUT",
        ),
    ],
    packets: Annotated[
        int, typer.Option("--packets", "-n", min=1, help="Packets in the trace, planted ones included.")
    ] = 1_000_000,
    flows: Annotated[
        int,
        typer.Option(
            "--flows",
            "-f",
            min=1,
            help="Distinct background five-tuples (the planted entities add their own flows).",
        ),
    ] = 100_000,
    seed: Annotated[
        int, typer.Option("--seed", "-s", min=0, help="Random seed: same options, same bytes.")
    ] = 0,
    zipf: Annotated[
        float,
        typer.Option(
            "--zipf",
            help="Zipf exponent of background flow sizes: the flow of rank r gets a share ~ r^-zipf.",
            rich_help_panel=_TRAFFIC,
        ),
    ] = 1.1,
    duration: Annotated[
        float,
        typer.Option(
            "--duration",
            "-d",
            help="Seconds covered; timestamps increase evenly over it.",
            rich_help_panel=_TRAFFIC,
        ),
    ] = 60.0,
    start: Annotated[
        str,
        typer.Option(
            "--start",
            help="Time of the trace's start, ISO 8601 (UTC when no zone is given).",
            rich_help_panel=_TRAFFIC,
        ),
    ] = DEFAULT_START_TEXT,
    ipv6: Annotated[
        float,
        typer.Option(
            "--ipv6",
            min=0.0,
            max=1.0,
            help="Fraction of background flows over IPv6.",
            rich_help_panel=_TRAFFIC,
        ),
    ] = 0.10,
    vlan: Annotated[
        float,
        typer.Option(
            "--vlan",
            min=0.0,
            max=1.0,
            help="Fraction of background flows with an 802.1Q tag.",
            rich_help_panel=_TRAFFIC,
        ),
    ] = 0.05,
    tcp: Annotated[
        float,
        typer.Option(
            "--tcp", min=0.0, max=1.0, help="Fraction of background flows over TCP.", rich_help_panel=_TRAFFIC
        ),
    ] = 0.85,
    udp: Annotated[
        float,
        typer.Option(
            "--udp", min=0.0, max=1.0, help="Fraction of background flows over UDP.", rich_help_panel=_TRAFFIC
        ),
    ] = 0.12,
    icmp: Annotated[
        float,
        typer.Option(
            "--icmp",
            min=0.0,
            max=1.0,
            help="Fraction of background flows of ICMP echo (ports 0). --tcp + --udp + --icmp must be 1.",
            rich_help_panel=_TRAFFIC,
        ),
    ] = 0.03,
    heavy_hitters: Annotated[
        int,
        typer.Option(
            "--heavy-hitters",
            min=0,
            max=256,
            help="Heavy-hitter sources (198.18.0.x) sharing --hh-share of all packets.",
            rich_help_panel=_PLANTED,
        ),
    ] = 5,
    hh_share: Annotated[
        float,
        typer.Option(
            "--hh-share",
            help="Share of all packets carried by the heavy hitters together (source i weighted 1/sqrt(i)).",
            rich_help_panel=_PLANTED,
        ),
    ] = 0.30,
    super_spreaders: Annotated[
        int,
        typer.Option(
            "--super-spreaders",
            min=0,
            max=256,
            help="Super-spreader sources (198.18.1.x), each sending one TCP SYN to --spread destinations.",
            rich_help_panel=_PLANTED,
        ),
    ] = 2,
    spread: Annotated[
        int,
        typer.Option(
            "--spread",
            min=1,
            max=1 << 22,
            help="Distinct destinations of each super-spreader.",
            rich_help_panel=_PLANTED,
        ),
    ] = 5000,
    ddos_victims: Annotated[
        int,
        typer.Option(
            "--ddos-victims",
            min=0,
            max=256,
            help="DDoS victims (198.18.2.x), alternately SYN-flooded and hit by DNS reflection.",
            rich_help_panel=_PLANTED,
        ),
    ] = 1,
    ddos_sources: Annotated[
        int,
        typer.Option(
            "--ddos-sources",
            min=1,
            max=1 << 24,
            help="Distinct sources hitting each DDoS victim (1 to 4 packets each).",
            rich_help_panel=_PLANTED,
        ),
    ] = 5000,
    ns: Annotated[
        bool,
        typer.Option(
            "--ns",
            help="Nanosecond timestamps (pcap magic a1b23c4d) instead of microseconds.",
            rich_help_panel=_OUTPUT,
        ),
    ] = False,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="Where to write the truth JSON. Default: OUT.truth.json beside OUT (.pcap dropped).",
            dir_okay=False,
            show_default=False,
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
    chunk: Annotated[
        int,
        typer.Option(
            "--chunk",
            min=1,
            help="Packets built in memory at a time (about 230 bytes each).",
            rich_help_panel="Tuning",
        ),
    ] = 1_000_000,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress bar on stderr (default: when stderr is a terminal and the run has several "
            "chunks).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write a synthetic CAIDA-like header trace (classic pcap) and its exact ground truth (JSON).

    Each record holds only headers (Ethernet, an 802.1Q tag on some flows, IPv4 or IPv6, TCP, UDP or
    ICMP; 42 to 78 bytes) while its original length is a realistic wire length (pure ACKs, 576-byte
    and full 1500-byte datagrams, ...). Background flows have Zipf-distributed sizes; heavy hitters,
    super-spreaders and DDoS victims are planted in 198.18.0.0/15, which the background never uses.

    The truth file beside the trace holds the parameters, the totals (packets, wire bytes, distinct
    five-tuples and source IPs, ...) and the true values of every planted entity. Everything follows
    from --seed: the same options write the same bytes. --config is accepted for uniformity with the
    other commands; gen reads nothing from it.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from netspectra.gen.synth import default_truth_path, generate, parse_start

    if config is not None:
        log.debug("gen ignores --config %s (it needs no configuration)", config)
    try:
        start_time = parse_start(start)
    except ValueError as exc:
        raise fail(str(exc)) from None
    truth_path = truth if truth is not None else default_truth_path(out)
    for target in (out, truth_path):
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir():
            raise fail(f"cannot write {target}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise fail(f"cannot write {target}: directory {parent} is not writable")
        if target.is_dir():
            raise fail(f"cannot write {target}: it is a directory")

    n_chunks = -(-packets // chunk)
    show = (err_console.is_terminal and n_chunks > 1) if progress is None else progress
    with Progress(
        TextColumn("[bold]generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("packets"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not show,
        transient=True,
    ) as bar:
        task = bar.add_task("gen", total=packets)
        try:
            result = generate(
                out,
                packets=packets,
                flows=flows,
                seed=seed,
                truth_path=truth_path,
                progress=lambda done, _total: bar.update(task, completed=done),
                zipf=zipf,
                duration=duration,
                start=start_time,
                ipv6=ipv6,
                vlan=vlan,
                tcp=tcp,
                udp=udp,
                icmp=icmp,
                heavy_hitters=heavy_hitters,
                hh_share=hh_share,
                super_spreaders=super_spreaders,
                spread=spread,
                ddos_victims=ddos_victims,
                ddos_sources=ddos_sources,
                nanosecond=ns,
                chunk=chunk,
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            raise fail(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    _print_summary(result)


def _print_summary(t: dict[str, Any]) -> None:
    from rich.table import Table

    tot = t["totals"]
    summary = Table(
        title="Generated trace", show_header=False, title_justify="left", box=None, pad_edge=False
    )
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("File", t["pcap"]["path"])
    summary.add_row("Truth", t.get("truth_path", "-"))
    summary.add_row("Packets", f"{tot['packets']:,}")
    summary.add_row("Bytes (wire)", f"{tot['bytes']:,}")
    summary.add_row("File size", f"{t['pcap']['file_bytes']:,}")
    summary.add_row("Distinct five-tuples", f"{tot['distinct_five_tuples']:,}")
    summary.add_row("Distinct source IPs", f"{tot['distinct_src_ips']:,}")
    summary.add_row("IPv6 / VLAN packets", f"{tot['ipv6_packets']:,} / {tot['vlan_packets']:,}")
    elapsed = t["elapsed_s"]
    rate = f" ({tot['packets'] / elapsed:,.0f} packets/s)" if elapsed > 0 else ""
    summary.add_row("Elapsed", f"{elapsed:.2f} s{rate}")
    console.print(summary)

    planted = Table(title="Planted entities", title_justify="left")
    for col, justify in (("kind", "left"), ("IP", "left"), ("packets", "right"), ("bytes", "right"),
                         ("distinct peers", "right")):  # fmt: skip
        planted.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in t["heavy_hitters"]:
        planted.add_row("heavy hitter", r["src_ip"], f"{r['packets']:,}", f"{r['bytes']:,}", "")
    for r in t["super_spreaders"]:
        planted.add_row(
            "super-spreader",
            r["src_ip"],
            f"{r['packets']:,}",
            f"{r['bytes']:,}",
            f"{r['distinct_dst']:,} dst",
        )
    for r in t["ddos_victims"]:
        planted.add_row(
            "DDoS victim", r["dst_ip"], f"{r['packets']:,}", f"{r['bytes']:,}", f"{r['distinct_src']:,} src"
        )
    if planted.row_count:
        console.print(planted)
