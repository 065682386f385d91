"""`make bench ARGS="--streams 1000"`: what open event streams cost the running stack.

    python -m tools.bench --streams 1000 [--events-url http://localhost:8001] [--idle-seconds 30]

Against a running `make run` (start it with `RATE_LIMITS=off make run`: from one address, 1,000
streams are over the per-address cap), it opens N streams of the flights' seat maps (spread over
every flight) on the streams' process, then measures that process (``booking_site.events_server``):

  memory        RSS and PSS before the streams and with them open: per stream
  idle CPU      its CPU while the N streams stay open and nothing changes (heartbeats only), as a
                share of one CPU, over --idle-seconds
  fan-out       a seat held and released on one flight (through the API): the delay from the
                change's commit (the event's ``at``) to its event read by each of that flight's
                streams (p50, p95, max)
  page          the time to answer a page (GET /flights/fl-101/) with the N streams open, against
                without: the streams must not slow the pages (gunicorn serves them)

Only the standard library; it talks only to the URLs it is given, on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tools.bench import _memory_mb, _process_cpu_seconds, _processes
from tools.http_client import Session
from tools.stats import percentile

FLIGHTS = ("fl-101", "fl-202", "fl-303", "fl-404", "fl-505", "fl-606")
WATCHED = "fl-101"


def events_pids() -> list[int]:
    return [pid for pid, cmdline in _processes() if "booking_site.events_server" in cmdline]


def _memory(pids: list[int]) -> dict[str, float]:
    total = {"rss": 0.0, "pss": 0.0}
    for pid in pids:
        for kind, mb in _memory_mb(pid).items():
            total[kind] += mb
    return total


@dataclass
class Streams:
    host: str
    port: int
    opened: int = 0
    refused: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # ms from commit to read, fl-101's streams
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def open(self, flight: str) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**16)
        writer.write(
            f"GET /api/flights/{flight}/events HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        if not head.startswith(b"HTTP/1.1 200"):
            self.refused.append(head.split(b"\r\n", 1)[0].decode())
            writer.close()
            return
        self.opened += 1
        self.writers.append(writer)
        self.readers.append(asyncio.create_task(self._read(reader, flight == WATCHED)))

    async def _read(self, reader: asyncio.StreamReader, watched: bool) -> None:
        while line := await reader.readline():
            if watched and b'"at":' in line:
                at = json.loads(line.split(b"data: ", 1)[1])["at"]
                self.arrivals.append((time.time() - at) * 1000)

    def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for writer in self.writers:
            writer.close()


def _free_seat(url: str) -> str:
    flight = Session(url).request("GET", f"/api/flights/{WATCHED}").data
    return next(s["id"] for s in flight["seatMap"]["seats"] if s["status"] == "available")


def page_ms(url: str, count: int = 40) -> float:
    """p50 of ``count`` sequential GETs of a seat map page."""
    browser, times = Session(url), []
    for _ in range(count):
        started = time.perf_counter()
        browser.request("GET", f"/flights/{WATCHED}/")
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 50)


def page_throughput(url: str, seconds: float = 10.0, concurrency: int = 8) -> tuple[float, float]:
    """Seat map pages per second and their p50 (ms), ``concurrency`` clients for ``seconds``."""
    import threading

    times: list[float] = []
    deadline = time.monotonic() + seconds

    def client() -> None:
        browser = Session(url)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            browser.request("GET", f"/flights/{WATCHED}/")
            times.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(times) / seconds, percentile(times, 50)


def compare_pages(url: str, events_url: str) -> None:
    """The choice of server, measured: the same Django pages served by gunicorn (sync workers,
    threads) and by the streams' ASGI process (sync views take turns on its one thread)."""
    for name, base in (("gunicorn (make run's web)", url), ("uvicorn (the streams' process)", events_url)):
        rate, p50 = page_throughput(base)
        print(f"seat map pages, 8 clients for 10 s, {name}: {rate:.0f}/s, p50 {p50:.0f} ms", flush=True)


async def _run(url: str, events_url: str, count: int, idle_seconds: float) -> int:
    parts = urlsplit(events_url)
    host, port = parts.hostname or "localhost", parts.port or 80
    pids = events_pids()
    if not pids:
        print("bench: no streams' process (booking_site.events_server) of this checkout: `make run` first")
        return 2
    page_before = page_ms(url)
    memory_before = _memory(pids)
    streams = Streams(host, port)
    started = time.monotonic()
    for first in range(0, count, 50):
        batch = range(first, min(first + 50, count))
        await asyncio.gather(*(streams.open(FLIGHTS[i % len(FLIGHTS)]) for i in batch))
    opened_in = time.monotonic() - started
    print(
        f"bench: {streams.opened} streams open in {opened_in:.1f} s, {len(streams.refused)} refused",
        flush=True,
    )
    if streams.refused:
        print(f"bench: refused: {streams.refused[0]} (start the stack with RATE_LIMITS=off)")
    await asyncio.sleep(3)
    memory_open = _memory(pids)

    cpu_before = sum(_process_cpu_seconds(pid) for pid in pids)
    await asyncio.sleep(idle_seconds)
    cpu_idle = sum(_process_cpu_seconds(pid) for pid in pids) - cpu_before

    page_open = page_ms(url)
    watching = sum(1 for i in range(streams.opened) if FLIGHTS[i % len(FLIGHTS)] == WATCHED)
    seat = _free_seat(url)
    # In a thread: this loop must read the events as they come, while the order is being made.
    customer = Session(url)
    status, order, _ = await asyncio.to_thread(
        customer.call, "POST", "/api/orders", {"flightId": WATCHED, "seats": [seat]}
    )
    deadline = time.monotonic() + 20
    while len(streams.arrivals) < watching and time.monotonic() < deadline:  # noqa: ASYNC110 (bounded)
        await asyncio.sleep(0.05)
    if status == 201:
        customer.request("DELETE", f"/api/orders/{order['orderId']}")
    fanout = sorted(streams.arrivals[:watching])
    streams.close()
    await asyncio.sleep(1)

    opened = max(streams.opened, 1)
    rss = memory_open["rss"] - memory_before["rss"]
    pss = memory_open["pss"] - memory_before["pss"]
    print()
    print(f"streams open               {streams.opened} (on {len(FLIGHTS)} flights), in {opened_in:.1f} s")
    print(
        f"memory of the streams' process  {memory_before['rss']:.1f} MB RSS before, "
        f"{memory_open['rss']:.1f} MB with them: {rss * 1024 / opened:.1f} KB RSS per stream "
        f"({pss * 1024 / opened:.1f} KB PSS)"
    )
    print(
        f"idle CPU                   {cpu_idle:.2f} s in {idle_seconds:g} s: "
        f"{cpu_idle / idle_seconds * 100:.1f} % of one CPU with {streams.opened} streams open"
    )
    if fanout:
        print(
            f"fan-out to {len(fanout)} streams of {WATCHED} (of {watching}): commit to event read "
            f"p50 {percentile(fanout, 50):.0f} ms, p95 {percentile(fanout, 95):.0f} ms, "
            f"max {fanout[-1]:.0f} ms"
        )
    else:
        print(f"fan-out: no event read on {WATCHED}'s {watching} streams (order answered {status})")
    print(
        f"page GET /flights/{WATCHED}/ p50: {page_before:.1f} ms without streams, "
        f"{page_open:.1f} ms with them"
    )
    return 0


def run(url: str, events_url: str, count: int, idle_seconds: float, *, pages: bool = False) -> int:
    for given in (url, events_url):
        if urlsplit(given).hostname not in {"localhost", "127.0.0.1", "::1"}:
            raise SystemExit("the bench only drives a stack on this machine (localhost)")
    print(f"bench: {count} streams on {events_url}, pages on {url}, {os.cpu_count()} CPUs", flush=True)
    if pages:
        compare_pages(url, events_url)
    return asyncio.run(_run(url, events_url, count, idle_seconds))
