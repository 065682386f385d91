"""Ports: a free one for tests, and a check that fails at once, naming who holds a taken one."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

# Below the kernel's ephemeral range (32768-60999 here): a port picked there could be taken
# before our server binds it, by any outgoing connection or by a server that listens on a port
# the kernel picks (the Temporal dev server's internal services do).
FREE_PORTS = range(20000, 32000)


_handed_out: set[int] = set()  # never the same port twice to one process (two stacks in one test)


def free_port() -> int:
    """A port that nothing listens on now, outside the range the kernel hands out by itself."""
    low, high = _ephemeral_range()
    candidates = [port for port in FREE_PORTS if not low <= port <= high and port not in _handed_out]
    for port in random.sample(candidates, k=min(200, len(candidates))):
        if port_is_free(port):
            _handed_out.add(port)
            return port
    with socket.socket() as sock:  # everything tried was taken: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


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
