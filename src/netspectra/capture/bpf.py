"""Classic BPF filters for live capture: compile a tcpdump expression, attach a program to a socket.

Contract: :func:`compile_bpf` runs ``tcpdump -ddd`` against a header-only pcap of the wanted link type
and snap length (no interface is opened, no privilege needed) and returns ``(code, jt, jf, k)``
instructions with every non-zero return capped to the snap length, so the program enforces the snap
length as libpcap does; :func:`snaplen_program` is the one-instruction program ``ret #snaplen`` used
without an expression. A missing ``tcpdump`` or a bad expression raise :class:`BpfError` with
tcpdump's own message. :func:`attach_filter` attaches a program with ``SO_ATTACH_FILTER`` (the kernel
copies it).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import tempfile

__all__ = ["BPF_RET_K", "BpfError", "Program", "attach_filter", "compile_bpf", "snaplen_program"]

SO_ATTACH_FILTER = 26
#: ``BPF_RET | BPF_K``: return the constant ``k`` (bytes to keep; 0 drops the packet).
BPF_RET_K = 0x06

#: A classic BPF program: ``(code, jt, jf, k)`` per instruction.
Program = list[tuple[int, int, int, int]]


class BpfError(RuntimeError):
    """A filter cannot be compiled; the message says why (tcpdump's words) and what to do."""


def snaplen_program(snaplen: int) -> Program:
    """The program that accepts every packet and keeps ``snaplen`` bytes of it."""
    return [(BPF_RET_K, 0, 0, snaplen)]


def compile_bpf(expression: str, linktype: int, snaplen: int) -> Program:
    """Compile a tcpdump filter ``expression`` for ``linktype`` into classic BPF instructions.

    Runs ``tcpdump -ddd -r HEADER`` where HEADER is a header-only pcap of that link type and
    snap length, so no interface is opened. Returns ``(code, jt, jf, k)`` tuples with every
    non-zero return capped to ``snaplen``. Raises :class:`BpfError` when tcpdump is not
    installed or rejects the expression (its message is included).
    """
    exe = shutil.which("tcpdump") or next(
        (p for p in ("/usr/sbin/tcpdump", "/usr/bin/tcpdump") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        raise BpfError(
            f"filter {expression!r}: compiling a BPF filter needs tcpdump, which is not installed "
            "(apt-get install tcpdump), or run without a filter"
        )
    with tempfile.NamedTemporaryFile(suffix=".pcap") as hdr:
        hdr.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        hdr.flush()
        proc = subprocess.run(
            [exe, "-r", hdr.name, "-ddd", "--", expression],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    if proc.returncode != 0:
        msg = " ".join(line for line in proc.stderr.splitlines() if not line.startswith("reading from"))
        raise BpfError(f"bad filter expression {expression!r}: {msg.strip() or 'tcpdump failed'}")
    lines = proc.stdout.split()
    try:
        count = int(lines[0])
        nums = [int(x) for x in lines[1:]]
    except (IndexError, ValueError):
        raise BpfError(f"filter {expression!r}: unexpected tcpdump -ddd output {proc.stdout!r}") from None
    if count < 1 or len(nums) != 4 * count:
        raise BpfError(f"filter {expression!r}: tcpdump -ddd gave {len(nums)} numbers for {count}")
    prog = []
    for i in range(count):
        code, jt, jf, k = nums[4 * i : 4 * i + 4]
        if code == BPF_RET_K and k:
            k = min(k, snaplen)
        prog.append((code, jt, jf, k))
    return prog


def attach_filter(sock: socket.socket, prog: Program) -> None:
    """Attach ``prog`` to ``sock`` (``SO_ATTACH_FILTER``)."""
    insns = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program
