#!/usr/bin/env python3
"""Where one message's time goes on a cluster: each hop of ``cfm bench --cluster 2
--scenario latency``, p50 to p99.9.

    .venv/bin/python scripts/probe_cluster_latency.py [cfm bench options …]

Runs ``cfm bench --cluster 2 --scenario latency --no-pin`` (the options given are added)
with every node patched as it starts (a ``sitecustomize`` in a temporary directory on
``PYTHONPATH``, which imports :func:`install` from this file). Each node notes, on the
monotonic clock the bench stamps each ``say`` with (the text opens with its send time):
the frame handled (``ClusterMessages._append``), the pipeline packed to be written to
Redis and its replies read (``batcher._pack``, ``batcher._read``), a publish read
(``Broker._on_publish``), the fan-out (``ClusterDelivery.stored``), the outbox flushes,
the notes to the search indexer process (``ClusterSearch._flush``) and the garbage
collector's passes. At exit each node writes
what it noted; this script then prints the hops of every message on the sending node
(A) and the other one (B), and the pauses. The bench's own report comes first.

Figures are wall-clock times on a shared machine: a hop includes the time its process
waited for a CPU. Run it in a session of its own with the session's autogroup given
priority (``setsid`` and ``echo -10 > /proc/self/autogroup``, as root) when other
sessions load the machine: the scheduler shares CPU between sessions first, so the
bench's four processes otherwise get one session's share.
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT_ENV = "CFM_PROBE_DIR"
Event = list[Any]


def stamp_of(data: bytes | str) -> int | None:
    """The send time a bench ``say`` opens its text with, from the text or a frame's bytes."""
    if isinstance(data, str):
        try:
            return int(data[:19])
        except ValueError:
            return None
    i = data.find(b"\xa4text")
    if i < 0 or i + 7 > len(data):
        return None
    start = i + 6 if data[i + 5] < 0xC0 else i + 7  # fixstr or str8 header
    try:
        return int(data[start:start + 19])
    except ValueError:
        return None


def install() -> None:
    """Patch this process's cluster node to note each hop (see the module's docstring)."""
    out = os.environ.get(OUT_ENV)
    if not out:
        return
    try:
        from cfm_server import session
        from cfm_server.cluster import batcher, broker, delivery, messages, search
    except ImportError:
        return
    events: list[Event] = []
    now = time.monotonic_ns

    def dump() -> None:
        if events:
            (Path(out) / f"{os.getpid()}.json").write_text(json.dumps(events))

    atexit.register(dump)

    append = messages.ClusterMessages._append

    def _append(self: Any, session_: Any, user: Any, room: Any, text: str, *a: Any,
                **k: Any) -> None:
        events.append(["recv", stamp_of(text), now()])
        append(self, session_, user, room, text, *a, **k)

    # A pipeline: packed (then written), and its replies read, in one task (a flight).
    pack, read = batcher._pack, batcher._read
    packed: dict[Any, tuple[int, list[int]]] = {}

    def _pack(conn: Any, commands: list[tuple[Any, ...]]) -> Any:
        stamps = [s for c in commands for arg in c
                  if isinstance(arg, bytes) and (s := stamp_of(arg))]
        packed[asyncio.current_task()] = (now(), stamps)
        return pack(conn, commands)

    async def _read(conn: Any, count: int) -> list[Any]:
        replies = await read(conn, count)
        began, stamps = packed.pop(asyncio.current_task(), (0, []))
        if began:
            events.append(["pipe", began, now(), stamps])
        return replies

    stored = delivery.ClusterDelivery.stored

    def _stored(self: Any, room: Any, origin: str, msg: bytes) -> None:
        began = now()
        stored(self, room, origin, msg)
        events.append(["fan", stamp_of(msg), began, now()])

    on_publish = broker.Broker._on_publish

    def _on_publish(self: Any, channel: bytes, data: bytes) -> None:
        events.append(["pub", stamp_of(data), now()])
        on_publish(self, channel, data)

    flush = session.Outbox.flush

    def _flush(self: Any) -> None:
        began = now()
        flush(self)
        events.append(["flush", began, now()])

    notes = search.ClusterSearch._flush  # the notes written to the indexer process

    def _notes(self: Any) -> None:
        began = now()
        notes(self)
        events.append(["index", began, now()])

    gc_began = [0]

    def gc_pass(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_began[0] = now()
        else:
            events.append(["gc", info["generation"], gc_began[0], now()])

    messages.ClusterMessages._append = _append  # type: ignore[method-assign]
    batcher._pack = _pack
    batcher._read = _read
    delivery.ClusterDelivery.stored = _stored  # type: ignore[method-assign]
    broker.Broker._on_publish = _on_publish  # type: ignore[method-assign]
    session.Outbox.flush = _flush  # type: ignore[method-assign]
    search.ClusterSearch._flush = _notes  # type: ignore[method-assign]
    gc.callbacks.append(gc_pass)


# --- the report -------------------------------------------------------------------------

def _line(name: str, values_ns: list[int]) -> str:
    if not values_ns:
        return f"  {name:44s} (none)"
    ms = sorted(v / 1e6 for v in values_ns)
    n = len(ms)

    def at(q: float) -> float:
        return ms[min(n - 1, int(q * n))]

    return (f"  {name:44s} n={n:6d}  p50 {at(.5):7.3f}  p90 {at(.9):7.3f}  p99 {at(.99):7.3f}"
            f"  p99.9 {at(.999):7.3f}  max {ms[-1]:7.2f} ms")


def report(out: Path) -> None:
    nodes: dict[str, list[Event]] = {}
    for path in out.glob("*.json"):
        noted = json.loads(path.read_text())
        if any(e[0] in ("recv", "fan") for e in noted):
            nodes[path.stem] = noted
    recv: dict[int, tuple[str, int]] = {}
    pipe: dict[int, tuple[int, int]] = {}
    fan: dict[int, dict[str, tuple[int, int]]] = {}
    pub: dict[int, dict[str, int]] = {}
    flushes: dict[str, tuple[list[int], list[int]]] = {}
    for node, noted in nodes.items():
        done = sorted((e[1], e[2]) for e in noted if e[0] == "flush")
        flushes[node] = ([d[0] for d in done], [d[1] for d in done])
        for e in noted:
            if e[0] == "recv" and e[1]:
                recv[e[1]] = (node, e[2])
            elif e[0] == "pipe":
                for s in e[3]:
                    pipe[s] = (e[1], e[2])
            elif e[0] == "fan" and e[1]:
                fan.setdefault(e[1], {})[node] = (e[2], e[3])
            elif e[0] == "pub" and e[1]:
                pub.setdefault(e[1], {})[node] = e[2]

    def written(node: str, after: int) -> int | None:
        """The end of the first outbox flush that began after ``after``."""
        starts, ends = flushes[node]
        i = bisect.bisect_left(starts, after)
        return ends[i] if i < len(ends) else None

    hops: dict[str, list[int]] = {name: [] for name in (
        "A1 send time -> say handled on A", "A2 handled -> pipeline written (batcher)",
        "A3 pipeline written -> replies read (Redis)", "A4 replies read -> fan-out on A",
        "A5 fan-out -> flushed on A", "B1 pipeline written -> publish read on B",
        "B2 publish read -> fan-out on B", "B3 fan-out -> flushed on B",
        "= send time -> flushed on A", "= send time -> flushed on B")}
    stamps = sorted(recv)
    stamps = stamps[len(stamps) // 10: len(stamps) - len(stamps) // 10]  # steady state
    for s in stamps:
        node_a, handled = recv[s]
        if s not in pipe:
            continue
        sent, replied = pipe[s]
        hops["A1 send time -> say handled on A"].append(handled - s)
        hops["A2 handled -> pipeline written (batcher)"].append(sent - handled)
        hops["A3 pipeline written -> replies read (Redis)"].append(replied - sent)
        for node, (began, ended) in fan.get(s, {}).items():
            out_at = written(node, ended)
            if node == node_a:
                hops["A4 replies read -> fan-out on A"].append(began - replied)
                if out_at:
                    hops["A5 fan-out -> flushed on A"].append(out_at - began)
                    hops["= send time -> flushed on A"].append(out_at - s)
                continue
            read = pub.get(s, {}).get(node)
            if read:
                hops["B1 pipeline written -> publish read on B"].append(read - sent)
                hops["B2 publish read -> fan-out on B"].append(began - read)
            if out_at:
                hops["B3 fan-out -> flushed on B"].append(out_at - began)
                hops["= send time -> flushed on B"].append(out_at - s)
    print(f"per hop, {len(stamps)} messages (the middle 80 %):")
    for name, values in hops.items():
        print(_line(name, values))
    first, last = (recv[stamps[0]][1], recv[stamps[-1]][1]) if stamps else (0, 0)
    for node, noted in sorted(nodes.items()):
        print(f"node pid {node}: pauses of its event loop (those among the messages above)")
        for generation in (0, 1, 2):
            print(_line(f"gc generation {generation}",
                        [e[3] - e[2] for e in noted if e[0] == "gc" and e[1] == generation
                         and first <= e[2] <= last]))
        print(_line("search index page", [e[2] - e[1] for e in noted if e[0] == "index"]))
        print(_line("outbox flush", [e[2] - e[1] for e in noted if e[0] == "flush"]))
        print(_line("fan-out of one message", [e[3] - e[2] for e in noted if e[0] == "fan"]))


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="cfm-probe-") as tmp:
        site, out = Path(tmp) / "site", Path(tmp) / "out"
        site.mkdir()
        out.mkdir()
        (site / "sitecustomize.py").write_text(
            f"import sys\nsys.path.insert(0, {str(here)!r})\n"
            "import probe_cluster_latency\nprobe_cluster_latency.install()\n")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(site), str(here.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            **{OUT_ENV: str(out)})
        command = [sys.executable, "-m", "cfm_cli.main", "bench", "--cluster", "2",
                   "--scenario", "latency", "--no-pin", *argv]
        code = subprocess.run(command, env=env, check=False).returncode
        report(out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
