"""Soak: the attacks of issue 10 (items 1-4) side by side with a legitimate DM pair.

A real ``cfm serve`` with default limits; the attacks run in a process of their own
(``tests/faults/attacks.py``), each from its own loopback address. Meanwhile alice and
bob keep exchanging direct messages, a reader joins the room of long messages with
``since: 0`` and reads its whole replay, and an old client joins the crowded lobby. The
test asserts that the server's memory stays under ``RSS_CEILING_MIB`` above its idle
size, that the pair's p99 latency stays under ``P99_CEILING_MS``, and that no legitimate
session is closed. (The reader and the old client run in the attack process, so that
reading 8 MB of replay does not delay the pair's own event loop.)

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
# The target. A machine saturated by other work misses it with no attack at all
# (three processes of this test share the cores with it): it is asserted when the load
# average is under the number of cores and the pair's p99 without any attack is under a
# quarter of it; the figures are printed either way. CFM_SOAK_P99_MS changes it.
P99_CEILING_MS = float(os.environ.get("CFM_SOAK_P99_MS", "100"))
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
    quiet_p99 = quiet[int(len(quiet) * 0.99)]
    load = os.getloadavg()[0]
    if quiet_p99 < P99_CEILING_MS / 4 and load < (os.cpu_count() or 1):
        assert p99 < P99_CEILING_MS
    else:  # a saturated machine delays the pair by itself: its latency says nothing here
        print(f"p99 not asserted: load average {load:.1f}, p99 {quiet_p99:.1f} ms "
              "with no attack at all")
    # The legitimate clients of the attack process: the replay read whole, the lobby
    # joined by an old client (a roster cut short, the count of all).
    assert "legit reader: replay 500" in report
    joined = re.search(r"legit old client: joined the lobby, (\d+) listed of (\d+), (\d+) bytes",
                       report)
    assert joined is not None, report
    assert int(joined.group(3)) <= 131072 + 4096  # page_bytes, and a little for the frame
