"""Helpers of the collector's integration tests: sending datagrams over loopback, free ports."""

from __future__ import annotations

import socket
import subprocess
import time


def send(payloads: list[bytes], port: int, *, pace_every: int = 200, host: str = "127.0.0.1") -> None:
    """Send over loopback, pausing a little every ``pace_every`` datagrams (a test, not a benchmark: the
    receive buffer must never overflow here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i, p in enumerate(payloads):
            s.sendto(p, (host, port))
            if i % pace_every == pace_every - 1:
                time.sleep(0.002)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_bound(port: int, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:  # type: ignore[type-arg]
    """Until a UDP socket is bound to ``port`` on this machine (it shows in /proc/net/udp); fails at once
    when ``proc`` ends meanwhile."""
    deadline = time.monotonic() + timeout
    hexport = f":{port:04X}"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr is not None else ""
            raise AssertionError(f"the process exited with {proc.returncode}: {str(err)[-2000:]}")
        for name in ("/proc/net/udp", "/proc/net/udp6"):
            with open(name) as f:
                if any(line.split()[1].endswith(hexport) for line in list(f)[1:]):
                    return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound UDP port {port} within {timeout:.0f} s")
