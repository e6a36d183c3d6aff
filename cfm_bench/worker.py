"""One driver process: opens its share of the connections and plays its share of the load.

The coordinator (``runner.py``) talks to each worker over a ``multiprocessing`` pipe:

    coordinator → worker   the WorkerSpec (as the process argument)
    worker → coordinator   {"ready": connect figures}   once every connection is open
    coordinator → worker   {"go": start_ns, "end": end_ns}   (CLOCK_MONOTONIC, shared)
    worker → coordinator   {"result": figures}

Publishing starts at ``go`` (minus a warm-up) and only what arrives between ``start``
and ``end`` is counted. The text of each ``say`` starts with its send time, so every
receiving peer measures send → receipt latency on the system-wide monotonic clock.
A fixed-rate publisher also writes how late its send was (its timer fired after the
intended time, or its process waited for a CPU), so the receiver records the scheduled
latency as well: intended send time → receipt, the figure that counts a late send.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgpack

from cfm_bench.histogram import Histogram
from cfm_bench.peer import Peer, Stats
from cfm_bench.target import run_queue_wait
from cfm_bench.wsclient import RX
from cfm_common.eventloop import run_event_loop

# The window of a max-rate publisher: says in flight before it waits for its probe (a
# peer in the same process and room) to see them delivered. It keeps the server busy
# without letting a slow driver pile up megabytes in the server's send buffers.
DEFAULT_WINDOW = 64
CONNECT_CONCURRENCY = 64
STALL_SECONDS = 5.0


@dataclass
class WorkerSpec:
    index: int
    scenario: str
    host: str
    port: int
    path: str
    members: list[tuple[str, str]]  # (name, room) of each peer this worker owns
    publishers: list[str] = field(default_factory=list)
    rate_per_publisher: float | None = None  # None: as fast as the window allows
    window: int = DEFAULT_WINDOW
    size: int = 32  # characters of text per say
    sources: list[str] = field(default_factory=list)
    cpus: list[int] | None = None
    wait_go_before_connect: bool = False
    connect_concurrency: int = CONNECT_CONCURRENCY
    join: bool = True
    # A cluster's node ports, over which each room's members are dealt (``_deal``).
    ports: list[int] = field(default_factory=list)
    # Receipts also stamped with the kernel's receive time (wsclient.StampedConnection).
    stamped: bool = False


def _deal(members: list[tuple[str, str]], ports: list[int]) -> list[int]:
    """The port of each member: a room's k-th member here goes to node (k + r) mod N, r
    the room's rank here — every room spread over the nodes, and its first member (the
    publisher, in ``rooms``) on a different node from one room to the next."""
    rank: dict[str, int] = {}
    count: dict[str, int] = {}
    out = []
    for _, room in members:
        r = rank.setdefault(room, len(rank))
        k = count[room] = count.get(room, -1) + 1
        out.append(ports[(k + r) % len(ports)])
    return out


def raise_nofile() -> int:
    """Lift the soft file-descriptor limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Publisher:
    __slots__ = ("count", "name", "outstanding", "peer", "room", "seq", "stop_ns")

    def __init__(self, peer: Peer, room: str) -> None:
        self.peer = peer
        self.name = peer.name
        self.room = room
        self.outstanding = 0
        self.count = 0
        self.seq = 0
        self.stop_ns = 0  # at max rate: the window is refilled until then


class Worker:
    def __init__(self, spec: WorkerSpec, link: Connection) -> None:
        self.spec = spec
        self.link = link
        self.stats = Stats()
        self.peers: list[Peer] = []
        self.latency = Histogram()  # send → receipt
        self.scheduled = Histogram()  # intended send time → receipt
        self.kernel = Histogram()  # send → the kernel's receipt (stamped connections)
        self.send_lateness = Histogram()  # intended send time → send (fixed rate)
        self.connect_latency = Histogram()
        self.deliveries = 0
        self.msg_bytes = 0
        self.start_ns = 0
        self.end_ns = 0
        self.publishers: dict[str, Publisher] = {}
        self.connect_failures = 0
        self.cpu_wait: float | None = None
        self.closed_early: dict[str, int] = {}
        # The text: send time (19 digits), lateness in µs (9), filler; `size` in all.
        self.filler = "x" * max(0, spec.size - 30)

    # --- coordinator link ------------------------------------------------------------------

    async def _recv(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.link.recv)

    def _send(self, message: dict[str, Any]) -> None:
        self.link.send(message)

    # --- connecting ----------------------------------------------------------------------

    async def connect_all(self) -> float:
        """Open, hello and join every peer; returns the wall time it took."""
        spec = self.spec
        semaphore = asyncio.Semaphore(spec.connect_concurrency)
        sources = spec.sources or [None]  # type: ignore[list-item]
        ports = _deal(spec.members, spec.ports or [spec.port])

        async def one(i: int, name: str, room: str) -> None:
            async with semaphore:
                peer = Peer(name, self.stats)
                began = time.monotonic_ns()
                try:
                    await peer.connect(spec.host, ports[i], spec.path,
                                       source=sources[i % len(sources)], stamped=spec.stamped)
                    await peer.hello()
                    if spec.join and room:
                        await peer.join(room)
                except (OSError, TimeoutError, RuntimeError, ConnectionError) as exc:
                    self.connect_failures += 1
                    self.stats.errors[f"connect: {type(exc).__name__}: {exc}"[:120]] += 1
                    if peer.conn is not None:
                        peer.conn.abort()
                    return
                self.connect_latency.add((time.monotonic_ns() - began) // 1000)
                self.peers.append(peer)

        began = time.perf_counter()
        await asyncio.gather(*(one(i, name, room)
                               for i, (name, room) in enumerate(spec.members)))
        return time.perf_counter() - began

    # --- receiving -----------------------------------------------------------------------

    def _make_on_msg(self, probe_for: set[str]) -> Any:
        monotonic_ns = time.monotonic_ns
        latency_add = self.latency.add
        scheduled_add = self.scheduled.add
        kernel_add = self.kernel.add
        rx = RX
        publishers = self.publishers
        half_window = self.spec.window // 2
        refill = self._refill

        def on_msg(payload: bytes) -> None:
            now = monotonic_ns()
            if probe_for:
                sender = msg_sender(payload)
                if sender in probe_for:
                    pub = publishers[sender]
                    pub.outstanding -= 1
                    if pub.outstanding <= half_window:
                        # Refilled here, in the callback that saw the delivery: a task
                        # woken per say (an event, a timer) cost the driver more than
                        # the say itself, on the two cores it shares with the server.
                        refill(pub, now)
            if self.start_ns <= now < self.end_ns:
                self.deliveries += 1
                self.msg_bytes += len(payload)
                # The send time opens the text, the send's lateness follows it: read
                # them from the bytes, no full unpack (this is the driver's hottest line).
                i = payload.find(b"\xa4text")
                if i < 0:
                    return
                head = payload[i + 5]
                start = i + 6 if head < 0xC0 else i + 7  # fixstr or str8 header
                try:
                    sent = int(payload[start:start + 19])
                    late = int(payload[start + 20:start + 29])
                except ValueError:
                    return
                us = (now - sent) // 1000
                latency_add(us)
                scheduled_add(us + late)
                if rx.ns:
                    kernel_add((rx.ns - sent) // 1000)

        return on_msg

    def wire_receivers(self) -> None:
        """Every peer records msgs; one peer per room (not a publisher) is its probe."""
        rooms_of = {name: room for name, room in self.spec.members}
        by_name = {peer.name: peer for peer in self.peers}
        for name in self.spec.publishers:
            peer = by_name.get(name)
            if peer is not None:
                self.publishers[name] = Publisher(peer, rooms_of[name])
        probes: dict[str, set[str]] = {}
        for pub in self.publishers.values():
            probes.setdefault(pub.room, set()).add(pub.name)
        plain = self._make_on_msg(set())
        for peer in self.peers:
            room = rooms_of[peer.name]
            if peer.name not in self.publishers and room in probes:
                peer.on_msg = self._make_on_msg(probes.pop(room))
            else:
                peer.on_msg = plain

    # --- publishing ----------------------------------------------------------------------

    def _say(self, pub: Publisher, sent_ns: int, late_us: int = 0) -> None:
        pub.seq += 1
        pub.peer.send({"t": "say", "room": pub.room, "id": f"{pub.seq}",
                       "text": f"{sent_ns:019d} {min(late_us, 999_999_999):09d} {self.filler}"})

    def _refill(self, pub: Publisher, now: int) -> None:
        """Send says until ``pub`` has its window in flight (at max rate, until its stop)."""
        if now >= pub.stop_ns:
            return
        window = self.spec.window
        while pub.outstanding < window:
            self._say(pub, now)
            pub.outstanding += 1
            pub.count += 1

    async def _publish_max(self, pub: Publisher, stop_ns: int) -> None:
        """Fill the window; the probe's callback refills it (``_refill``). This task only
        watches for a stall: nothing delivered for ``STALL_SECONDS`` (lost msgs)."""
        monotonic_ns = time.monotonic_ns
        pub.stop_ns = stop_ns
        self._refill(pub, monotonic_ns())
        while (now := monotonic_ns()) < stop_ns:
            seen = pub.count, pub.outstanding
            await asyncio.sleep(min(STALL_SECONDS, (stop_ns - now) / 1e9))
            if (pub.count, pub.outstanding) == seen and pub.outstanding > 0 \
                    and monotonic_ns() < stop_ns:
                self.stats.errors[f"publisher stalled {STALL_SECONDS:.0f} s (lost msgs?)"] += 1
                pub.outstanding = 0
                self._refill(pub, monotonic_ns())

    async def _publish_rate(self, pub: Publisher, stop_ns: int, offset: float) -> None:
        rate = self.spec.rate_per_publisher
        assert rate
        interval_ns = int(1e9 / rate)
        next_ns = time.monotonic_ns() + int(offset * interval_ns)
        monotonic_ns = time.monotonic_ns
        while next_ns < stop_ns:
            now = monotonic_ns()
            while next_ns <= now:
                # Stamped with the send time, and how late it is: the receiver counts
                # both send → receipt and intended → receipt (a late send's delay).
                late_us = (now - next_ns) // 1000
                self.send_lateness.add(late_us)
                self._say(pub, now, late_us)
                pub.count += 1
                next_ns += interval_ns
            await asyncio.sleep((next_ns - monotonic_ns()) / 1e9)

    async def publish(self, stop_ns: int) -> None:
        pubs = list(self.publishers.values())
        if self.spec.rate_per_publisher:
            tasks = [self._publish_rate(p, stop_ns, i / max(1, len(pubs)))
                     for i, p in enumerate(pubs)]
        else:
            tasks = [self._publish_max(p, stop_ns) for p in pubs]
        await asyncio.gather(*tasks)

    # --- the run -----------------------------------------------------------------------

    async def run(self) -> None:
        spec = self.spec
        if spec.wait_go_before_connect:
            go = await self._recv_go_after_ready({})
            cpu0 = process_cpu()
            connect_seconds = await self.connect_all()
            self._finish(connect_seconds, go,
                         cpu=(process_cpu() - cpu0) / max(1e-9, connect_seconds))
            return
        connect_seconds = await self.connect_all()
        gc.collect()
        self.wire_receivers()
        go = await self._recv_go_after_ready({"connect_seconds": connect_seconds,
                                             "connected": len(self.peers),
                                             "failures": self.connect_failures,
                                             "rss": _rss()})
        self.start_ns, self.end_ns = go["start"], go["end"]
        warm_ns = go.get("publish_from", self.start_ns)
        await _sleep_until(warm_ns)
        cpu0, wait0 = process_cpu(), run_queue_wait(os.getpid())
        await self.publish(self.end_ns)
        cpu1, wait1 = process_cpu(), run_queue_wait(os.getpid())
        # Let what is in flight arrive (not counted) so the server is not torn down mid-write.
        await self._drain(1.0)
        seconds = (self.end_ns - warm_ns) / 1e9
        if seconds < 0.1:  # no traffic phase (idle): no rate to speak of
            self._finish(connect_seconds, go)
            return
        if wait0 is not None and wait1 is not None:
            self.cpu_wait = (wait1 - wait0) / seconds
        self._finish(connect_seconds, go, cpu=(cpu1 - cpu0) / seconds)

    async def _recv_go_after_ready(self, ready: dict[str, Any]) -> dict[str, Any]:
        self._send({"ready": ready})
        message = await self._recv()
        assert "go" in message, message
        return message["go"]

    async def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(p.outstanding <= 0 for p in self.publishers.values()):
                break
            await asyncio.sleep(0.02)

    def _finish(self, connect_seconds: float, go: dict[str, Any], cpu: float | None = None
                ) -> None:
        closed = {}
        for peer in self.peers:
            if peer.conn is not None and peer.conn.closed.done():
                code = str(peer.conn.closed.result())
                closed[code] = closed.get(code, 0) + 1
        self._send({"result": {
            "deliveries": self.deliveries,
            "msg_bytes": self.msg_bytes,
            "latency": self.latency.counts,
            "scheduled_latency": self.scheduled.counts,
            "kernel_latency": self.kernel.counts,
            "send_lateness": self.send_lateness.counts,
            "connect_latency": self.connect_latency.counts,
            "connect_seconds": connect_seconds,
            "connected": len(self.peers),
            "connect_failures": self.connect_failures,
            "published": sum(p.count for p in self.publishers.values()),
            "driver_cpu": cpu,
            "driver_cpu_wait": self.cpu_wait,
            "closed_early": closed,
            "rss": _rss(),
            **self.stats.as_dict(),
        }})

    async def close_all(self) -> None:
        for peer in self.peers:
            peer.close()
        await asyncio.gather(*(peer.closed(2.0) for peer in self.peers))


def msg_sender(payload: bytes) -> str | None:
    """The ``from`` of a ``msg`` frame, read from its bytes (a fixstr name, as cfm's
    are), else by unpacking it: the probe reads one per say."""
    i = payload.find(b"\xa4from")
    if i >= 0 and i + 5 < len(payload):
        head = payload[i + 5]
        if 0xA0 <= head <= 0xBF:
            return payload[i + 6:i + 6 + (head & 0x1F)].decode()
    sender = msgpack.unpackb(payload, raw=False).get("from")
    return sender if isinstance(sender, str) else None


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


async def _sleep_until(ns: int) -> None:
    delay = (ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


def worker_main(spec: WorkerSpec, link: Connection) -> None:
    """The entry point of a driver process."""
    raise_nofile()
    if spec.cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, spec.cpus)

    async def main() -> None:
        worker = Worker(spec, link)
        try:
            await worker.run()
            # Hold the connections open until the coordinator has read the server's RSS.
            await worker._recv()
        finally:
            await worker.close_all()

    run_event_loop(main())
