"""Soak: the attacks of issue 10 (items 1-4) side by side with a legitimate DM pair.

A real ``cfm serve`` with default limits; the attacks run in a process of their own
(``tests/faults/attacks.py``), each from its own loopback address. Meanwhile alice and
bob keep exchanging direct messages, a reader joins the room of long messages with
``since: 0`` and reads its whole replay, and an old client joins the crowded lobby. The
test asserts that the server's memory stays under ``RSS_CEILING_MIB`` above its idle
size, that the pair is never stalled (p99 under ``STALL_MS``; under ``CFM_SOAK_P99_MS``
in a run by hand), and that no legitimate session is closed. (The reader and the old
client run in the attack process, so that reading 8 MB of replay does not delay the
pair's own event loop.)

``CFM_SOAK_SECONDS`` sets the length of the attack (default 12 s, for CI); the figures
of a longer run by hand are in docs/security.md.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import sys
import time
from pathlib import Path

from tests.faults.procs import ServerProcess
from tests.wire import WireClient, signed_in

SECONDS = float(os.environ.get("CFM_SOAK_SECONDS", "12"))
RSS_CEILING_MIB = 300  # over the idle server, as docs/security.md documents
# The target, asserted in a run by hand that sets CFM_SOAK_P99_MS (100 is the
# issue's): latency is the benchmark's to measure, and a test suite running on every
# core (CI: four workers on two) delays the pair by itself. Every run asserts the
# failure the issue found — the pair stalled for seconds — with room for a loaded
# machine: STALL_MS. The figures are printed either way.
P99_CEILING_MS = float(os.environ.get("CFM_SOAK_P99_MS", "0"))
STALL_MS = 1000.0
BASELINE_SECONDS = 3.0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def dm_pair(alice: WireClient, bob: WireClient, stop: asyncio.Event,
                  prefix: str = "d") -> list[float]:
    """alice → bob, one message at a time, under 20 a second: each one's latency (ms)."""
    latencies = []
    i = 0
    while not stop.is_set():
        i += 1
        sent = time.perf_counter()
        await alice.send({"t": "say", "to": "bob", "text": f"hi {i}", "id": f"{prefix}{i}"})
        await bob.recv_until("msg", id=f"{prefix}{i}", timeout=10)
        latencies.append((time.perf_counter() - sent) * 1000)
        # alice reads her acks too (a client that never reads is closed by keepalive).
        await alice.recv_until("ack", id=f"{prefix}{i}", timeout=10)
        await asyncio.sleep(0.05)  # within the say bucket (20/s)
    return latencies


async def test_the_attacks_side_by_side_with_a_dm_pair(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    await server.start()
    assert server.proc is not None
    pid = server.proc.pid
    attacks = None
    try:
        async with signed_in(server.url, "alice") as alice, \
                signed_in(server.url, "bob") as bob:
            # Contacts both ways: DMs to someone who has not listed you are a spammer's
            # (the per-user stranger bucket), not a legitimate pair's.
            await alice.send({"t": "contact", "op": "add", "name": "bob"})
            await bob.send({"t": "contact", "op": "add", "name": "alice"})
            await bob.recv_until("contact", name="alice")
            idle = rss_mib(pid)
            # The pair with no attack: how loaded the machine is anyway.
            stop = asyncio.Event()
            quiet_pair = asyncio.create_task(dm_pair(alice, bob, stop, "q"))
            await asyncio.sleep(BASELINE_SECONDS)
            stop.set()
            quiet = sorted(await quiet_pair)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            attacks = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.faults.attacks", server.url, str(SECONDS),
                stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2],
            )
            assert attacks.stdout is not None
            line = await asyncio.wait_for(attacks.stdout.readline(), 120)
            assert line.strip() == b"prepared", line
            stop = asyncio.Event()
            cpu_start = cpu_seconds(pid)
            pair = asyncio.create_task(dm_pair(alice, bob, stop))
            peak = idle
            deadline = time.monotonic() + SECONDS
            while time.monotonic() < deadline:
                peak = max(peak, rss_mib(pid))
                await asyncio.sleep(0.25)
            stop.set()
            cpu = cpu_seconds(pid) - cpu_start
            latencies = sorted(await pair)
            report = (await attacks.stdout.read()).decode()
            await attacks.wait()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            attacker_cpu = (after.ru_utime + after.ru_stime
                            - children.ru_utime - children.ru_stime)
            # Still signed in, both: nothing closed them.
            await alice.send({"t": "say", "to": "bob", "text": "still here", "id": "end"})
            await bob.recv_until("msg", id="end")
    finally:
        if attacks is not None and attacks.returncode is None:
            attacks.kill()
            await attacks.wait()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            attacker_cpu = (after.ru_utime + after.ru_stime
                            - children.ru_utime - children.ru_stime)
        await server.stop()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"\nsoak {SECONDS:.0f} s: no attack: p99 {quiet[int(len(quiet) * 0.99)]:.1f} ms; "
          f"RSS idle {idle:.0f} MiB, peak {peak:.0f} MiB "
          f"(+{peak - idle:.0f}); server CPU {cpu / SECONDS:.0%} of a core; "
          f"DM pair n={len(latencies)} p50 {p50:.1f} ms "
          f"p99 {p99:.1f} ms max {latencies[-1]:.1f} ms; the attacker used "
          f"{attacker_cpu:.1f} s of CPU in all\n{report}")
    assert peak - idle < RSS_CEILING_MIB
    assert p99 < STALL_MS, f"the DM pair stalled: p99 {p99:.0f} ms under attack"
    if P99_CEILING_MS:
        assert p99 < P99_CEILING_MS
    # The legitimate clients of the attack process: the replay read whole, the lobby
    # joined by an old client (a roster cut short, the count of all).
    assert "legit reader: replay 500" in report
    joined = re.search(r"legit old client: joined the lobby, (\d+) listed of (\d+), (\d+) bytes",
                       report)
    assert joined is not None, report
    assert int(joined.group(3)) <= 131072 + 4096  # page_bytes, and a little for the frame
