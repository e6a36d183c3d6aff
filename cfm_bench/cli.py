"""``cfm bench``: drive a cfm server with many clients and report what it sustains.

    cfm bench --spawn --scenario fanout            # cfm serve (sqlite) in a subprocess
    cfm bench --spawn --store memory --scenario rooms
    cfm bench --baseline --scenario fanout         # the bare websockets yardstick
    cfm bench --compare --scenario fanout          # baseline, cfm memory, cfm sqlite
    cfm bench --url ws://host:1863/ws --server-pid 1234 --scenario latency
    cfm bench --cluster 2 --scenario fanout        # redis-server + 2 cfm serve --redis nodes
    cfm bench --cluster 2 --spawn --scenario fanout  # single node (sqlite), then the cluster

Heavy imports happen inside the command so ``cfm --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Measure a cfm server: fan-out, latency, capacity.",
                  add_completion=False)

SCENARIO_HELP = ("fanout | rooms | latency | idle | connect | replay | bigroom "
                 "(see docs/performance.md)")


def _rate(value: str | None) -> float | None:
    if value is None:
        return None
    if value.strip().lower() == "max":
        return 0.0
    try:
        rate = float(value)
    except ValueError:
        raise typer.BadParameter("--rate is a number of msg/s or 'max'") from None
    if rate <= 0:
        raise typer.BadParameter("--rate must be > 0 (or 'max')")
    return rate


@app.callback(invoke_without_command=True)
def bench(
    scenario: Annotated[str, typer.Option(help=SCENARIO_HELP)] = "fanout",
    url: Annotated[str | None, typer.Option(help="A running server, ws://host:port/ws.")] = None,
    server_pid: Annotated[int | None, typer.Option(help="With --url: the server's pid, for its CPU and RSS.")] = None,  # noqa: E501
    spawn: Annotated[bool, typer.Option("--spawn", help="Start `cfm serve --no-rate-limits --no-ai` on a free port with a temp data dir.")] = False,  # noqa: E501
    store: Annotated[str, typer.Option(help="With --spawn: sqlite or memory.")] = "sqlite",
    cluster: Annotated[int, typer.Option("--cluster", help="Spawn redis-server (AOF, fsync always) and N `cfm serve --redis` nodes; each room's members are dealt over the nodes. With --spawn: the single node first, then the cluster, and their ratio.")] = 0,  # noqa: E501
    redis_fsync: Annotated[str, typer.Option(help="With --cluster: Redis's appendfsync, always (durable: an ack survives a SIGKILL of Redis), everysec or no.")] = "always",  # noqa: E501
    baseline: Annotated[bool, typer.Option("--baseline", help="Spawn the bare websockets baseline server instead.")] = False,  # noqa: E501
    compare: Annotated[bool, typer.Option("--compare", help="Run the scenario on the baseline, cfm memory and cfm sqlite in turn; print ratios.")] = False,  # noqa: E501
    clients: Annotated[int | None, typer.Option(help="Connections (default: the scenario's).")] = None,  # noqa: E501
    rooms: Annotated[int | None, typer.Option(help="Rooms the clients are spread over.")] = None,
    publishers: Annotated[int | None, typer.Option(help="Publishing clients per room.")] = None,
    rate: Annotated[str | None, typer.Option(help="Total say/s, or 'max' (closed loop).")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds measured (after --warmup).")] = None,  # noqa: E501
    warmup: Annotated[float, typer.Option(help="Seconds of load before measuring.")] = 1.0,
    size: Annotated[int, typer.Option(help="Characters of text per message (>= 30: the send time and its lateness).")] = 32,  # noqa: E501
    procs: Annotated[int | None, typer.Option(help="Driver processes (default: one per core not given to a spawned server).")] = None,  # noqa: E501
    window: Annotated[int | None, typer.Option(help="At max rate: says in flight per publisher (default: 1,024 shared, at most 64 each).")] = None,  # noqa: E501
    messages: Annotated[int, typer.Option(help="replay: messages the reader missed.")] = 10_000,
    presence: Annotated[int, typer.Option(help="bigroom: presence changes after the joins.")] = 100,
    room: Annotated[str, typer.Option(help="bigroom: the room everyone joins.")] = "#lobby",
    quiet_clients: Annotated[bool, typer.Option("--quiet", help="bigroom: the clients opt in to the big-room extension (hello.quiet, join.members_limit 50).")] = False,  # noqa: E501
    sources: Annotated[int | None, typer.Option(help="127.0.0.x source addresses to spread connections over (default: one per 8,000).")] = None,  # noqa: E501
    kernel_receipt: Annotated[bool, typer.Option(help="Also stamp each receipt with the kernel's receive time (SO_TIMESTAMPNS): the latency without the driver's own wait for a CPU.")] = False,  # noqa: E501
    pin: Annotated[bool, typer.Option(help="Pin a spawned server and the driver to different cores.")] = True,  # noqa: E501
    baseline_script: Annotated[Path | None, typer.Option(help="Path of benchmarks/baseline_server.py when not run from a checkout.")] = None,  # noqa: E501
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a benchmark scenario and report deliveries/s, latency, connects/s, CPU, RSS."""
    from cfm_bench.runner import BenchOptions
    from cfm_bench.scenarios import SCENARIOS

    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    if store not in ("sqlite", "memory"):
        raise typer.BadParameter("--store is sqlite or memory")
    if cluster < 0:
        raise typer.BadParameter("--cluster is a number of nodes")
    if redis_fsync not in ("always", "everysec", "no"):
        raise typer.BadParameter("--redis-fsync is always, everysec or no")
    modes = sum(bool(x) for x in (url, spawn, baseline, compare))
    if not (modes == 1 or (cluster and modes == 0)) or (cluster and (url or baseline or compare)):
        raise typer.BadParameter("give exactly one of --url, --spawn, --baseline, --compare, "
                                 "--cluster N (--cluster N may go with --spawn)")
    if size < 30:
        raise typer.BadParameter(
            "--size must be >= 30 (the text carries the send time and its lateness)")
    options = BenchOptions(
        scenario=scenario, clients=clients, rooms=rooms, publishers=publishers,
        rate=_rate(rate), duration=duration, warmup=warmup, size=size, procs=procs,
        window=window, messages=messages, presence=presence, room=room, sources=sources,
        quiet=quiet_clients, kernel_receipt=kernel_receipt,
    )
    if url:
        plan = [("url", None)]
    elif compare:
        plan = [("baseline", None), ("cfm", "memory"), ("cfm", "sqlite")]
    elif baseline:
        plan = [("baseline", None)]
    elif cluster and spawn:
        plan = [("cfm", store), ("cluster", f"{cluster}:{redis_fsync}")]
    elif cluster:
        plan = [("cluster", f"{cluster}:{redis_fsync}")]
    else:
        plan = [("cfm", store)]
    results = [_run_one(kind, kind_store, options, url, server_pid, pin, baseline_script,
                        quiet=as_json) for kind, kind_store in plan]
    _print(results, as_json)
    if any(r.get("errors") for r in results):
        raise typer.Exit(1)


def _run_one(kind: str, store: str | None, options: Any, url: str | None,
             server_pid: int | None, pin: bool, baseline_script: Path | None,
             *, quiet: bool) -> dict[str, Any]:
    import os

    from cfm_bench import target as targets
    from cfm_bench.runner import run_scenario

    server_cpus, driver_cpus = targets.split_cpus(options.procs) if pin and kind != "url" \
        else (None, None)
    if kind == "url":
        assert url is not None
        target = targets.from_url(url, server_pid)
    elif kind == "baseline":
        target = targets.spawn_baseline(server_cpus, baseline_script)
    elif kind == "cluster":
        from cfm_bench.cluster import spawn_cluster

        assert store is not None
        nodes, fsync = store.split(":")
        target = spawn_cluster(int(nodes), server_cpus, fsync)
    else:
        assert store is not None
        target = targets.spawn_cfm(store, server_cpus)
    if not quiet:
        typer.echo(f"cfm bench: {options.scenario} against {target.kind} at {target.url}"
                   + (f" (server on CPU {server_cpus}, driver on CPU {driver_cpus})"
                      if server_cpus else ""), err=True)
    previous = os.sched_getaffinity(0) if driver_cpus else None
    try:
        if driver_cpus:
            os.sched_setaffinity(0, driver_cpus)
        return run_scenario(target, options, driver_cpus)
    finally:
        if previous:
            os.sched_setaffinity(0, previous)
        target.stop()


def _print(results: list[dict[str, Any]], as_json: bool) -> None:
    from cfm_bench.report import machine, ratios, render, render_comparison

    if as_json:
        if len(results) == 1:
            payload: dict[str, Any] = {**results[0], "machine": machine()}
        else:
            payload = {"scenario": results[0]["scenario"], "machine": machine(),
                       "results": results, "ratio_to_baseline": ratios(results)}
        typer.echo(json.dumps(payload))
        return
    for result in results:
        typer.echo(render(result))
    if len(results) > 1:
        typer.echo(render_comparison(results))
