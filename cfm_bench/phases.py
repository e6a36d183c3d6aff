"""Single-driver scenarios run in phases: ``replay`` and ``bigroom``.

Both measure work in bulk rather than a steady rate, so one driver process is enough
(the coordinator's, pinned away from a spawned server) and the phases stay in order.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import time
from typing import TYPE_CHECKING, Any

import msgpack

from cfm_bench.peer import Peer, Stats

if TYPE_CHECKING:
    from cfm_bench.options import BenchOptions
    from cfm_bench.scenarios import Scenario
    from cfm_bench.target import ServerWatch, Target

FILL_WINDOW = 256
QUIET_MEMBERS_LIMIT = 50  # bigroom --quiet: joined.members holds this many
SETTLE_SECONDS = 0.25  # quiet time after which a phase counts as done


def run_replay(target: Target, options: BenchOptions, watch: ServerWatch) -> dict[str, Any]:
    return asyncio.run(_replay(target, options, watch))


def run_bigroom(target: Target, options: BenchOptions, shape: Scenario,
                watch: ServerWatch) -> dict[str, Any]:
    return asyncio.run(_bigroom(target, options, shape, watch))


async def _connect(target: Target, name: str, stats: Stats, *, quiet: bool = False) -> Peer:
    peer = Peer(name, stats)
    await peer.connect(target.host, target.port, target.path)
    await peer.hello(quiet=quiet)
    return peer


async def _replay(target: Target, options: BenchOptions, watch: ServerWatch) -> dict[str, Any]:
    run = secrets.token_hex(3)
    room = f"#r{run}"
    stats = Stats()
    total = options.messages
    writer = await _connect(target, f"w{run}", stats)
    await writer.join(room)

    # Fill the room with `total` messages, a window of unacknowledged says at a time.
    began = time.perf_counter()
    acks: collections.deque[asyncio.Future[dict[str, Any]]] = collections.deque()
    text = "x" * options.size
    for i in range(total):
        if len(acks) >= FILL_WINDOW:
            await asyncio.wait_for(acks.popleft(), 30)
        acks.append(writer.expect("ack"))
        writer.send({"t": "say", "room": room, "text": text, "id": str(i)})
    for future in acks:
        await asyncio.wait_for(future, 30)
    fill_seconds = time.perf_counter() - began

    # A reader who missed all of it: join{since: 0}, then page with history{after}.
    reader = Peer(f"r{run}", stats)
    got = 0
    last_seq = 0
    enough = asyncio.Event()
    expected = [total]

    def on_msg(payload: bytes) -> None:
        nonlocal got, last_seq
        got += 1
        last_seq = max(last_seq, msgpack.unpackb(payload, raw=False)["seq"])
        if got >= expected[0]:
            enough.set()

    reader.on_msg = on_msg
    await reader.connect(target.host, target.port, target.path)
    welcome = await reader.hello()
    replay_limit = int(welcome.get("limits", {}).get("replay", total))
    cpu0 = watch.cpu()
    began = time.perf_counter()
    joined = await reader.join(room, since=0, timeout=60)
    pages = 0
    if joined.get("more"):
        expected[0] = min(total, replay_limit)
    if got >= expected[0]:  # the replay may have arrived before this coroutine resumed
        enough.set()
    async with asyncio.timeout(120):
        await enough.wait()
    more = bool(joined.get("more"))
    while more:
        history = await reader.request({"t": "history", "room": room, "after": last_seq,
                                        "limit": 200}, "history", 60)
        pages += 1
        msgs = history.get("msgs", [])
        got += len(msgs)
        if msgs:
            last_seq = max(last_seq, msgs[-1]["seq"])
        more = bool(history.get("more")) and bool(msgs)
    seconds = time.perf_counter() - began
    cpu1 = watch.cpu()
    for peer in (writer, reader):
        peer.close()
    await asyncio.gather(writer.closed(), reader.closed())
    figures: dict[str, Any] = {
        "messages": total,
        "received": got,
        "last_seq": last_seq,
        "history_pages": pages,
        "replay_limit": replay_limit,
        "fill_seconds": round(fill_seconds, 3),
        "fill_says_per_s": round(total / fill_seconds),
        "replay_seconds": round(seconds, 4),
        "replay_msgs_per_s": round(got / seconds) if seconds else None,
        "errors": sum(stats.errors.values()) + (0 if got == total else 1),
        "error_kinds": dict(stats.errors),
    }
    if cpu0 is not None and cpu1 is not None:
        figures["server_cpu_seconds"] = round(cpu1 - cpu0, 4)
    figures["server_rss"] = watch.rss()
    return figures


async def _settle(stats: Stats, limit: float) -> None:
    """Wait until no frame has arrived for SETTLE_SECONDS (at most ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    seen = -1
    while time.monotonic() < deadline:
        if stats.frames_total == seen:
            return
        seen = stats.frames_total
        await asyncio.sleep(SETTLE_SECONDS)


def _bytes_in(peers: list[Peer]) -> int:
    return sum(peer.conn.bytes_in for peer in peers if peer.conn is not None)


async def _bigroom(target: Target, options: BenchOptions, shape: Scenario,
                   watch: ServerWatch) -> dict[str, Any]:
    run = secrets.token_hex(3)
    stats = Stats()
    n = shape.clients
    semaphore = asyncio.Semaphore(64)

    async def connect(i: int) -> Peer:
        async with semaphore:
            return await _connect(target, f"g{run}{i:05d}", stats, quiet=options.quiet)

    began = time.perf_counter()
    peers = list(await asyncio.gather(*(connect(i) for i in range(n))))
    connect_seconds = time.perf_counter() - began
    await _settle(stats, 30)

    # Joins, in ten steps: the cost per join as the room grows shows the curve.
    steps = []
    batch = max(1, n // 10)
    join_frames = 0
    cpu_join = 0.0
    join_began = time.perf_counter()
    join_semaphore = asyncio.Semaphore(16)
    members_limit = QUIET_MEMBERS_LIMIT if options.quiet else None

    async def join(peer: Peer) -> None:
        async with join_semaphore:
            await peer.join(options.room, timeout=120, members_limit=members_limit)

    for first in range(0, n, batch):
        group = peers[first:first + batch]
        frames0, cpu0, t0 = stats.frames_total, watch.cpu(), time.perf_counter()
        bytes0 = _bytes_in(peers)
        await asyncio.gather(*(join(peer) for peer in group))
        await _settle(stats, 120)
        frames = stats.frames_total - frames0
        join_bytes = _bytes_in(peers) - bytes0
        cpu = watch.cpu()
        step = {
            "members_after": first + len(group),
            "joins": len(group),
            "seconds": round(time.perf_counter() - t0 - SETTLE_SECONDS, 3),
            "frames": frames,
            "frames_per_join": round(frames / len(group), 1),
            "bytes_per_join": round(join_bytes / len(group)),
        }
        if cpu is not None and cpu0 is not None:
            step["server_cpu_seconds"] = round(cpu - cpu0, 3)
            cpu_join += cpu - cpu0
        join_frames += frames
        steps.append(step)
    join_seconds = time.perf_counter() - join_began

    # Presence changes: each goes to every other member (they all watch each other),
    # unless the clients are quiet (then only to the changer's own session).
    changers = peers[: min(options.presence, n)]
    frames0, cpu0, t0 = stats.frames_total, watch.cpu(), time.perf_counter()
    for i, peer in enumerate(changers):
        peer.send({"t": "presence", "status": "away" if i % 2 == 0 else "busy"})
        if i % 16 == 15:
            await asyncio.sleep(0)
    await _settle(stats, 120)
    presence_frames = stats.frames_total - frames0
    presence_seconds = time.perf_counter() - t0 - SETTLE_SECONDS
    cpu1 = watch.cpu()

    bytes_in = _bytes_in(peers)
    for peer in peers:
        peer.close()
    await asyncio.gather(*(peer.closed(5.0) for peer in peers))

    first_step, last_step = steps[0], steps[-1]
    growth = last_step["frames_per_join"] / max(1.0, first_step["frames_per_join"])
    # n joins that each cost frames in proportion to the room: about n²/2 per frame kind.
    quadratic = join_frames > n * n / 4
    figures: dict[str, Any] = {
        "clients": n,
        "room": options.room,
        "quiet": options.quiet,
        "connect_seconds": round(connect_seconds, 2),
        "join_seconds": round(join_seconds, 2),
        "join_frames": join_frames,
        "join_bytes": sum(step["bytes_per_join"] * step["joins"] for step in steps),
        "join_frames_per_member_squared": round(join_frames / (n * n), 3),
        "join_server_cpu_seconds": round(cpu_join, 2) if cpu0 is not None else None,
        "join_steps": steps,
        "presence_changes": len(changers),
        "presence_frames": presence_frames,
        "presence_frames_per_change": round(presence_frames / max(1, len(changers)), 1),
        "presence_seconds": round(presence_seconds, 3),
        "bytes_received": bytes_in,
        "frames": dict(stats.frames),
        "errors": sum(stats.errors.values()),
        "error_kinds": dict(stats.errors),
        "quadratic": quadratic,
        "frames_per_join_growth": round(growth, 1),
    }
    if cpu1 is not None and cpu0 is not None:
        figures["presence_server_cpu_seconds"] = round(cpu1 - cpu0, 3)
    figures["server_rss"] = watch.rss()
    if quadratic:
        figures.setdefault("warnings", []).append(
            f"O(members²): {n} joins cost {join_frames:,} frames "
            f"({join_frames / (n * n):.2f} x members²); a join's frames grow with the room "
            f"({first_step['frames_per_join']:.0f} → {last_step['frames_per_join']:.0f})")
    return figures
