"""Ports: a free one for tests, and a check that fails at once, naming who holds a taken one."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on the port now. Like the servers themselves, ignore the
    TIME_WAIT connections a server that just stopped leaves behind (SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ensure_free(port: int, *, what: str, variable: str) -> None:
    """Fail at once, naming the way out, rather than talk to whatever else holds the port."""
    if port_is_free(port):
        return
    holder = listener(port)
    by = f" by pid {holder[0]} ({holder[1]})" if holder else ""
    stop = f"stop it (kill {holder[0]})" if holder else "stop what uses it"
    raise SystemExit(f"[stack] port {port} for {what} is taken{by}: {stop}, or set {variable}")


def listener(port: int) -> tuple[int, str] | None:
    """The pid and command line of the process listening on the TCP port, if /proc shows it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    return int(entry.name), cmdline.strip()[:200]
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return None
