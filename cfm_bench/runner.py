"""The coordinator: splits a scenario over driver processes, times it, gathers the figures.

Everything here blocks (pipes, sleeps); the asynchronous work happens in the worker
processes (``worker.py``) or, for the single-driver scenarios ``replay`` and
``bigroom``, in ``phases.py`` under ``asyncio.run``. A test may call ``run_scenario``
from a thread while an in-process server runs on its event loop.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import secrets
import time
from typing import Any

from cfm_bench.histogram import Histogram
from cfm_bench.options import BenchOptions  # re-exported: callers import it from here
from cfm_bench.scenarios import Scenario
from cfm_bench.target import ServerWatch, Target
from cfm_bench.worker import DEFAULT_WINDOW, WorkerSpec, raise_nofile, worker_main

log = logging.getLogger(__name__)

# A driver process above this share of one core is probably what limits the figures.
DRIVER_BUSY = 0.85
CPU_WAIT_WARN = 0.1
AUTOGROUP = "/proc/sys/kernel/sched_autogroup_enabled"


def autogroup_note(path: str = AUTOGROUP) -> str:
    """What the CPU-wait warning adds where Linux shares the CPU between sessions first
    (autogroups): every process of the bench, server and driver, is in the session it
    was started from, so against busy other sessions they all get one session's share."""
    try:
        with open(path) as f:
            enabled = f.read().strip() == "1"
    except OSError:
        return ""
    return ("; the kernel shares CPU between sessions first (autogroup), so the bench's "
            "processes share one session's part: run it alone, or in a session of its "
            "own with that session's autogroup niced (docs/performance.md)") if enabled else ""
# Says in flight over all max-rate publishers: enough to keep a server busy, few enough
# that queueing in socket buffers does not turn into seconds of latency.
IN_FLIGHT = 1024
PORTS_PER_SOURCE = 8_000  # connections per 127.0.0.x source address, well under the range


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run_scenario(target: Target, options: BenchOptions,
                 driver_cpus: list[int] | None = None) -> dict[str, Any]:
    """Run one scenario against one target; the figures as a JSON-ready dict."""
    shape = options.shape()
    result: dict[str, Any] = {
        "scenario": shape.name,
        "target": target.kind,
        "url": target.url,
        "load_before": load_average(),
        "server_cpus": target.cpus,
        "driver_cpus": driver_cpus,
    }
    watch = ServerWatch(target.watched(), target.names)
    warnings = []
    limit = raise_nofile()
    # Each driver process holds its share of the connections (at least one process).
    if math.ceil(shape.clients / max(1, options.procs or 1)) + 64 > limit:
        warnings.append(
            f"{shape.clients} connections need more file descriptors than the hard limit "
            f"({limit}) allows one process: raise it (ulimit -Hn) or use --procs")
    if shape.kind == "replay":
        from cfm_bench.phases import run_replay

        result.update(run_replay(target, options, watch))
    elif shape.kind == "bigroom":
        from cfm_bench.phases import run_bigroom

        result.update(run_bigroom(target, options, shape, watch))
    else:
        result.update(_run_workers(target, options, shape, watch, driver_cpus))
    warnings += result.pop("warnings", [])
    if warnings:
        result["warnings"] = warnings
    result["load_after"] = load_average()
    return result


def _plan(shape: Scenario, procs: int, run: str) -> list[tuple[list[tuple[str, str]], list[str]]]:
    """(members, publishers) per process.

    With at least as many rooms as processes, each room lives whole in one process.
    With fewer (fanout), a room's members are dealt round-robin over the processes, so
    one big room can use several driver cores; every process that holds a publisher
    also holds other members of its room, one of which is the publisher's probe.
    """
    rooms = max(1, min(shape.rooms, shape.clients))
    per_room = max(1, shape.clients // rooms)
    spread = rooms < procs
    plans: list[tuple[list[tuple[str, str]], list[str]]] = [([], []) for _ in range(procs)]
    index = 0
    for r in range(rooms):
        room = f"#b{run}-{r}"
        for k in range(per_room):
            name = f"b{run}{index:06d}"
            index += 1
            members, publishers = plans[k % procs if spread else r % procs]
            members.append((name, room))
            if k < shape.publishers and per_room > 1:
                publishers.append(name)
    return plans


def _run_workers(target: Target, options: BenchOptions, shape: Scenario, watch: ServerWatch,
                 driver_cpus: list[int] | None) -> dict[str, Any]:
    procs = options.procs or (len(driver_cpus) if driver_cpus else 1)
    procs = max(1, min(procs, shape.clients // 2))
    run = secrets.token_hex(3)
    plans = _plan(shape, procs, run)
    n_sources = options.sources or math.ceil(shape.clients / PORTS_PER_SOURCE)
    sources = [f"127.0.0.{i + 1}" for i in range(n_sources)] if target.host == "127.0.0.1" \
        and n_sources > 1 else []
    publishers_total = sum(len(p) for _, p in plans)
    window = options.window or max(2, min(DEFAULT_WINDOW, IN_FLIGHT // max(1, publishers_total)))
    rate_per_publisher = shape.rate / publishers_total if shape.rate and publishers_total else None
    rss_before = watch.rss()
    rss_each_before = watch.rss_each()
    cpu_before_connect = watch.cpu()

    context = multiprocessing.get_context("spawn")
    links, processes = [], []
    for i, (members, publishers) in enumerate(plans):
        spec = WorkerSpec(
            index=i, scenario=shape.name, host=target.host, port=target.port, path=target.path,
            ports=target.ports,
            members=members, publishers=publishers if shape.kind == "traffic" else [],
            rate_per_publisher=rate_per_publisher, window=window, size=options.size,
            sources=sources, cpus=driver_cpus,
            wait_go_before_connect=shape.kind == "connect",
            stamped=options.kernel_receipt,
        )
        ours, theirs = context.Pipe()
        process = context.Process(target=worker_main, args=(spec, theirs), daemon=True)
        process.start()
        theirs.close()
        links.append(ours)
        processes.append(process)
    try:
        connect_timeout = 60 + shape.clients / 100
        readies = [_recv(link, connect_timeout, "ready", process)["ready"]
                   for link, process in zip(links, processes, strict=True)]
        began_connect = time.monotonic()
        if shape.kind == "idle":
            time.sleep(1.0)  # let the server's allocations settle before reading its RSS
        rss_connected = watch.rss()
        rss_each_connected = watch.rss_each()
        cpu_connected, wait_connected = watch.cpu(), watch.run_queue_wait()
        now = time.monotonic_ns()
        publish_from = now + 300_000_000
        start = publish_from + int(options.warmup * 1e9) if shape.kind == "traffic" else now
        end = start + int(shape.duration * 1e9) if shape.kind == "traffic" else start
        for link in links:
            link.send({"go": {"publish_from": publish_from, "start": start, "end": end}})
        cpu0 = cpu1 = wait0 = wait1 = None
        each0: dict[str, float] = {}
        each1: dict[str, float] = {}
        if shape.kind == "traffic":
            _sleep_until_ns(start)
            cpu0, wait0, each0 = watch.cpu(), watch.run_queue_wait(), watch.cpu_each()
            _sleep_until_ns(end)
            cpu1, wait1, each1 = watch.cpu(), watch.run_queue_wait(), watch.cpu_each()
        wait = 60 + shape.clients / 100 + (shape.duration if shape.kind == "traffic" else 0)
        results = [_recv(link, wait, "result", process)["result"]
                   for link, process in zip(links, processes, strict=True)]
        connected_seconds = time.monotonic() - began_connect
        rss_end = watch.rss()
        cpu_end, wait_end = watch.cpu(), watch.run_queue_wait()
        for link in links:
            link.send({"done": True})
    finally:
        for process in processes:
            process.join(15)
            if process.is_alive():
                process.kill()
    figures = _merge(results)
    figures["procs"] = procs
    figures["sources"] = len(sources) or 1
    figures["clients"] = shape.clients
    figures["rooms"] = shape.rooms
    figures["members_per_room"] = max(1, shape.clients // max(1, shape.rooms))
    figures["publishers"] = publishers_total
    figures["rate"] = shape.rate or "max"
    if not shape.rate:
        figures["window"] = window
    figures["size"] = options.size
    if shape.kind != "traffic":
        del figures["latency"], figures["scheduled_latency"]
    if not figures["kernel_latency"]["samples"]:
        del figures["kernel_latency"]  # not stamped
    if not figures["send_lateness"]["samples"]:
        del figures["send_lateness"]  # max rate: a say goes when the window lets it
    if shape.kind == "traffic":
        seconds = shape.duration
        figures["duration"] = seconds
        figures["deliveries_per_s"] = round(figures["deliveries"] / seconds)
        figures["says_per_s"] = round(figures["published"] / (seconds + options.warmup + 0.3))
        if cpu0 is not None and cpu1 is not None:
            figures["server_cpu"] = round((cpu1 - cpu0) / seconds, 3)
            if cpu1 > cpu0:
                # Robust to a shared machine: what one CPU-second of the server delivers.
                figures["deliveries_per_server_cpu_s"] = round(
                    figures["deliveries"] / (cpu1 - cpu0))
        if wait0 is not None and wait1 is not None:
            # Share of the run the server was runnable but another process had its CPU.
            figures["server_cpu_wait"] = round((wait1 - wait0) / seconds, 3)
            if figures["server_cpu_wait"] > CPU_WAIT_WARN:
                figures.setdefault("warnings", []).append(
                    f"the server waited {figures['server_cpu_wait']:.0%} of a core for a CPU: "
                    "other processes compete with it, so rates are understated (see "
                    "deliveries_per_server_cpu_s)" + autogroup_note())
        if len(each1) > 1:
            # A cluster, or a server with an indexer: where the CPU went (cores over the
            # measured seconds), by process.
            figures["server_cpu_by_process"] = {
                name: round((each1[name] - each0.get(name, 0.0)) / seconds, 3)
                for name in each1}
        figures["server_rss"] = rss_end
    elif shape.kind == "idle":
        if rss_before is not None and rss_connected is not None:
            connected = max(1, figures["connected"])
            figures["server_rss_before"] = rss_before
            figures["server_rss"] = rss_connected
            figures["rss_per_connection"] = round((rss_connected - rss_before) / connected)
        if target.ports and len(rss_each_connected) > 1:
            # A cluster: each node holds every len(ports)-th connection.
            per_node = max(1, figures["connected"] // len(target.ports))
            # (Redis holds a few keys per signed-in user: per connection of the cluster.)
            figures["rss_per_connection_by_process"] = {
                name: round((rss_each_connected[name] - rss_each_before.get(name, 0))
                            / (connected if name == "redis" else per_node))
                for name in rss_each_connected}
            figures["connections_per_node"] = per_node
        figures["driver_rss_per_connection"] = round(
            sum(r["rss"] for r in readies) / max(1, figures["connected"]))
    elif shape.kind == "connect":
        slowest = max(r["connect_seconds"] for r in results)
        figures["connects_per_s"] = round(figures["connected"] / slowest) if slowest else None
        if cpu_connected is not None and cpu_end is not None:
            figures["server_cpu_seconds"] = round(cpu_end - cpu_connected, 3)
            figures["server_cpu_us_per_connect"] = round(
                (cpu_end - cpu_connected) / max(1, figures["connected"]) * 1e6)
            if slowest:
                figures["server_cpu"] = round((cpu_end - cpu_connected) / slowest, 3)
        if wait_connected is not None and wait_end is not None and slowest:
            figures["server_cpu_wait"] = round((wait_end - wait_connected) / slowest, 3)
        figures["server_rss"] = rss_end
    if cpu_before_connect is not None and cpu_connected is not None:
        figures["server_cpu_seconds_connecting"] = round(cpu_connected - cpu_before_connect, 3)
    figures["wall_seconds"] = round(connected_seconds, 2)
    busy = [c for c in figures.pop("driver_cpus") if c is not None]
    if busy:
        figures["driver_cpu"] = round(max(busy), 3)
        # Runnable time (on a CPU or waiting for one): near a whole core means the driver
        # wanted more CPU than it got, whoever took it.
        wanted = max(busy) + (figures.get("driver_cpu_wait") or 0.0)
        if wanted > DRIVER_BUSY:
            figures.setdefault("warnings", []).append(
                f"a driver process was runnable {wanted:.0%} of the time: the driver may be "
                "the bottleneck (more --procs on a machine with more cores)")
    return figures


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    latency, connect = Histogram(), Histogram()
    scheduled, lateness, kernel = Histogram(), Histogram(), Histogram()
    frames: dict[str, int] = {}
    errors: dict[str, int] = {}
    closed: dict[str, int] = {}
    totals = {"deliveries": 0, "msg_bytes": 0, "published": 0, "connected": 0,
              "connect_failures": 0}
    for r in results:
        latency.merge(r["latency"])
        scheduled.merge(r["scheduled_latency"])
        kernel.merge(r["kernel_latency"])
        lateness.merge(r["send_lateness"])
        connect.merge(r["connect_latency"])
        for key in totals:
            totals[key] += r[key]
        for source, into in ((r["frames"], frames), (r["errors"], errors),
                             (r["closed_early"], closed)):
            for k, v in source.items():
                into[k] = into.get(k, 0) + v
    out: dict[str, Any] = dict(totals)
    out["latency"] = latency.summary()
    out["scheduled_latency"] = scheduled.summary()
    out["kernel_latency"] = kernel.summary()
    out["send_lateness"] = lateness.summary()
    out["connect_latency"] = connect.summary()
    out["msg_frame_bytes"] = round(totals["msg_bytes"] / totals["deliveries"], 1) \
        if totals["deliveries"] else None
    out["frames"] = frames
    # A connection the server closed during the run (1013: too slow a reader) is an error.
    out["errors"] = sum(errors.values()) + sum(closed.values())
    out["error_kinds"] = errors
    out["closed_early"] = closed
    out["driver_cpus"] = [r.get("driver_cpu") for r in results]
    waits = [r["driver_cpu_wait"] for r in results if r.get("driver_cpu_wait") is not None]
    if waits:
        out["driver_cpu_wait"] = round(max(waits), 3)
    return out


def _recv(link: Any, timeout: float, key: str, process: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not link.poll(0.2):
        if process is not None and not process.is_alive():
            raise RuntimeError(f"a driver process died (exit code {process.exitcode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"a driver process sent no {key!r} within {timeout:.0f} s")
    message = link.recv()
    if key not in message:
        raise RuntimeError(f"a driver process sent {message!r}, not {key!r}")
    return message


def _sleep_until_ns(ns: int) -> None:
    delay = (ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)
