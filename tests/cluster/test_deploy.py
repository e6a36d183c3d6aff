"""contrib/nginx/cfm-cluster.conf and contrib/haproxy/cfm-cluster.cfg, as shipped (only
addresses, ports and certificate paths replaced), in front of three real ``cfm serve
--redis`` processes over one real redis-server, all on loopback: SDK clients given the
proxy's one URL land on every node, talk across nodes, and when a node is SIGKILLed the
clients it held reconnect through the proxy to the others and resume — every message
once, in order, nothing lost. HAProxy's /readyz checks also take out a node cut off
from Redis (alive, but unable to store anything) and move its clients. Skipped, saying
why, where nginx / HAProxy is missing (./run-tests installs both when it runs as root)."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from cfm_common._backoff import Backoff
from cfm_common.client import Client, ConnectionState
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess
from tests.ports import free_port
from tests.sdk.conftest import Recorder
from tests.server.serve_proc import ServeProcess, serve
from tests.server.test_proxy_samples import start, stop

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
SAMPLE_NODES = ["10.0.0.11:1863", "10.0.0.12:1863", "10.0.0.13:1863"]
NAMES = ["ann", "ben", "cat", "dan", "eve", "fay"]  # two per node
LOBBY = "#lobby"


def node_port(node: ServeProcess) -> int:
    return int(re.search(r":(\d+)/ws$", node.url).group(1))  # type: ignore[union-attr]


def point_at(sample: str, nodes: list[ServeProcess]) -> str:
    for address, node in zip(SAMPLE_NODES, nodes, strict=True):
        assert address in sample, f"the sample no longer names {address}"
        sample = sample.replace(address, f"127.0.0.1:{node_port(node)}")
    return sample


def nginx_command(tmp_path: Path, port: int, nodes: list[ServeProcess]) -> list[str]:
    site = point_at((CONTRIB / "nginx" / "cfm-cluster.conf").read_text(), nodes)
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = re.sub(r"\n\s*listen \[::\]:443 ssl;", "", site)
    site = re.sub(r"ssl_certificate .*;", f"ssl_certificate {tmp_path / 'chain.pem'};", site)
    site = re.sub(r"ssl_certificate_key .*;", f"ssl_certificate_key {tmp_path / 'key.pem'};",
                  site)
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nmaster_process off;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'logs' / 'error.log'};\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path};\n"
        f"proxy_temp_path {tmp_path};\n{site}\n}}\n")
    return ["nginx", "-p", str(tmp_path), "-c", str(conf)]


def haproxy_command(tmp_path: Path, port: int, nodes: list[ServeProcess]) -> list[str]:
    config = point_at((CONTRIB / "haproxy" / "cfm-cluster.cfg").read_text(), nodes)
    pem = tmp_path / "both.pem"  # HAProxy wants the chain and the key in one file
    pem.write_bytes((tmp_path / "chain.pem").read_bytes() + (tmp_path / "key.pem").read_bytes())
    config = config.replace("bind :443 ssl crt /etc/haproxy/certs/chat.example.org.pem",
                            f"bind 127.0.0.1:{port} ssl crt {pem}")
    config = re.sub(r"\n\s*bind :::443 .*", "", config)
    config = re.sub(r"\n\s*log /dev/log local0", "", config)  # no syslog here
    config = config.replace("maxconn 100000", "maxconn 1000")  # within a test's fd limit
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    return ["haproxy", "-db", "-f", str(path)]


PROXIES = {"nginx": nginx_command, "haproxy": haproxy_command}


@pytest.fixture(params=sorted(PROXIES))
def proxy_kind(request: pytest.FixtureRequest) -> str:
    if shutil.which(request.param) is None:
        pytest.skip(f"{request.param} is not installed (./run-tests installs it as root)")
    return str(request.param)


def _http(node: ServeProcess) -> str:
    return node.url.replace("ws://", "http://").removesuffix("/ws")


async def sessions(node: ServeProcess) -> int:
    """The node's signed-in sessions, from its /metrics (public on loopback)."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(_http(node) + "/metrics")).text
    return int(float(re.search(r"^cfm_sessions (\S+)$", text, re.M).group(1)))  # type: ignore[union-attr]


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll an async predicate (bounded): state only a node's metrics tell."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


@dataclass
class Cluster:
    nodes: list[ServeProcess]
    link: FaultyProxy  # node1's way to Redis, which a test may cut


@pytest.fixture
async def cluster(redis: RedisProcess, tmp_path: Path) -> AsyncIterator[Cluster]:
    link = FaultyProxy(redis.port)
    await link.start()
    async with AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(serve(
            "--redis", link.url if i == 1 else redis.url, "--node-id", f"node{i}",
            "--trusted-proxy", "127.0.0.1", "--set", "public_url=wss://chat.example.org/ws",
            "--data-dir", str(tmp_path / f"node{i}"))) for i in (1, 2, 3)]
        yield Cluster(nodes, link)
    await link.close()


@asynccontextmanager
async def behind_proxy(kind: str, cluster: Cluster, tmp_path: Path
                       ) -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    """The proxy sample running in front of the nodes: its wss:// URL and a context that
    trusts its (test CA's) certificate."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    (tmp_path / "chain.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    port = free_port()
    proxy = await start(*PROXIES[kind](tmp_path, port, cluster.nodes), port=port)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        yield f"wss://127.0.0.1:{port}/ws", context
    finally:
        await stop(proxy)


async def signed_in_clients(url: str, context: ssl.SSLContext, cluster: Cluster,
                            clients: list[Client]) -> list[Recorder]:
    """Every one of NAMES through the proxy, in #lobby (two land on each node), and a
    message from each that reaches all the others across the nodes."""
    for name in NAMES:
        # One URL, the proxy's; a short back-off so that a failed round costs little.
        client = Client(url, name, token_file=False, ssl=context, backoff=Backoff(0.1, 1))
        clients.append(client)
        await asyncio.wait_for(client.connect(), 20)
        await client.join(LOBBY)
    # Balanced by open connections: every node holds some of them.
    await wait_for(lambda: _all(cluster.nodes, lambda n: n == len(NAMES) // 3))
    records = [Recorder(c) for c in clients]
    for client in clients:
        await client.say(f"{client.name} before", room=LOBBY)
    for record in records:  # each message crossed to the users of the other nodes
        await record.wait(lambda r: len(r.msgs(LOBBY)) == len(NAMES), timeout=20)
    return records


async def test_three_nodes_behind_the_proxy_sample(proxy_kind: str, cluster: Cluster,
                                                   tmp_path: Path) -> None:
    clients: list[Client] = []
    async with behind_proxy(proxy_kind, cluster, tmp_path) as (url, context):
        try:
            base = url.replace("wss://", "https://").removesuffix("/ws")
            async with httpx.AsyncClient(verify=context) as http:
                assert (await http.get(base + "/readyz")).status_code == 200
                assert (await http.get(base + "/metrics")).status_code == 404
            records = await signed_in_clients(url, context, cluster, clients)

            victim = cluster.nodes[0]
            held = await sessions(victim)
            victim.proc.send_signal(signal.SIGKILL)
            await victim.proc.wait()
            await everyone_again_once_in_order(clients, records, moved=held)
            await wait_for(lambda: _total(cluster.nodes[1:], len(NAMES)))
        finally:
            for client in clients:
                await client.close()


async def test_haproxy_takes_out_a_node_cut_off_from_redis_and_moves_its_clients(
        cluster: Cluster, tmp_path: Path) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (./run-tests installs it as root)")
    clients: list[Client] = []
    async with behind_proxy("haproxy", cluster, tmp_path) as (url, context):
        try:
            records = await signed_in_clients(url, context, cluster, clients)
            cut_off = cluster.nodes[0]
            held = await sessions(cut_off)
            cluster.link.refusing = True  # node1 alone loses Redis; it stays up
            cluster.link.cut()
            # /readyz says 503, HAProxy's checks take the node out and close its
            # connections (shutdown-sessions): its clients come back through the others.
            await everyone_again_once_in_order(clients, records, moved=held)
            await wait_for(lambda: _total(cluster.nodes[1:], len(NAMES)))
            assert await ready(cut_off) == 503
            # Redis back: the node is ready again, and HAProxy sends it new connections.
            cluster.link.refusing = False
            await wait_for(lambda: _ready_is(cut_off, 200))
            # (HAProxy brings it back after two good checks: the first tries may land
            # on the others.)
            for attempt in range(40):  # bounded: 40 × (sign-in + 0.25 s)
                before = await sessions(cut_off)
                late = Client(url, f"gus{attempt}", token_file=False, ssl=context)
                clients.append(late)
                await asyncio.wait_for(late.connect(), 20)
                if await sessions(cut_off) > before:
                    break
                await late.close()
                await asyncio.sleep(0.25)
            else:
                raise AssertionError("no new connection reached the node back in service")
        finally:
            for client in clients:
                await client.close()


async def everyone_again_once_in_order(clients: list[Client], records: list[Recorder], *,
                                       moved: int) -> None:
    """Everyone writes at once, while the clients of a lost node are being moved (the SDK
    keeps their says and sends them again, with their ids, once back): then exactly
    ``moved`` clients have reconnected, and every client holds the same history of the
    lobby, each message once, in seq order."""
    await asyncio.wait_for(asyncio.gather(
        *(c.say(f"{c.name} after", room=LOBBY) for c in clients)), 30)
    for record in records:
        await record.wait(lambda r: len(r.msgs(LOBBY)) == 2 * len(NAMES)
                          and r.client.state is ConnectionState.CONNECTED, timeout=30)
    again = [r.client.name for r in records
             if any(s.state is ConnectionState.RECONNECTING for s in r.states())]
    assert len(again) == moved, (again, moved)  # exactly the lost node's clients
    expected = {f"{n} {when}" for n in NAMES for when in ("before", "after")}
    first = [(m.seq, m.text) for m in records[0].msgs(LOBBY)]
    seqs = [seq for seq, _ in first]
    assert seqs == list(range(seqs[0], seqs[0] + len(expected))), first  # once, in order
    assert {text for _, text in first} == expected
    for record in records[1:]:  # the same history for everyone, wherever they were
        assert [(m.seq, m.text) for m in record.msgs(LOBBY)] == first


async def ready(node: ServeProcess) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(_http(node) + "/readyz")).status_code


async def _ready_is(node: ServeProcess, status: int) -> bool:
    return await ready(node) == status


async def _all(nodes: list[ServeProcess], good: Callable[[int], bool]) -> bool:
    return all([good(await sessions(node)) for node in nodes])


async def _total(nodes: list[ServeProcess], want: int) -> bool:
    return sum([await sessions(node) for node in nodes]) == want


async def test_behind_haproxy_clients_come_back_on_its_retry_after_once_redis_is_back(
        cluster: Cluster, redis: RedisProcess, tmp_path: Path) -> None:
    """The operator's trial: Redis out for a while behind the HAProxy sample. Every node
    turns unready, HAProxy closes their clients and answers each reconnect 503 with
    ``Retry-After: 2``; the clients (the SDK's default back-off) wait 2-3 s each time,
    never sooner and never growing (3.75 s at most: a node's own hint), so once Redis is
    back they are back within one such wait of HAProxy's taking the nodes in again.
    Asserted on each client's schedule of attempts (``StateChanged.retry_in``), not on
    the machine's speed."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (./run-tests installs it as root)")
    from cfm_common.client import StateChanged

    def waits(record: Recorder) -> list[float]:
        return [e.retry_in for e in record.events if isinstance(e, StateChanged)
                and e.state is ConnectionState.RECONNECTING and e.retry_in is not None]

    refused = 4  # attempts answered 503 before Redis comes back: the old back-off >= 4 s
    clients: list[Client] = []
    async with behind_proxy("haproxy", cluster, tmp_path) as (url, context):
        try:
            for name in NAMES[:3]:
                client = Client(url, name, token_file=False, ssl=context)
                clients.append(client)
                await asyncio.wait_for(client.connect(), 20)
            records = [Recorder(c) for c in clients]
            await redis.stop()
            for record in records:  # closed by HAProxy, then refused with its hint
                await record.wait(lambda r: len(waits(r)) > refused, timeout=60)
            await redis.start()  # the same port and dir: the nodes reconnect by themselves
            for record in records:
                await record.wait(lambda r: r.client.state is ConnectionState.CONNECTED
                                  and len(waits(r)) > refused, timeout=60)
            # Each wait follows a hint: HAProxy's 2 s, or, from a node not yet taken out,
            # its hello refusal's retry_ms (its next probe of Redis: at most 2.5 s). The
            # client waits the hint (at least 0.5 s) spread up to 1.5 times.
            for record in records:
                hinted = waits(record)[1:]  # (the first follows the close: no answer yet)
                assert all(0.5 <= w <= 2.5 * 1.5 for w in hinted), waits(record)
                assert max(hinted[-refused:]) >= 2.0  # HAProxy's Retry-After, in the end
        finally:
            for client in clients:
                await client.close()
