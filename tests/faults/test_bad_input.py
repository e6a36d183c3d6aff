"""Bad input, one case at a time, while two bystanders keep talking.

Every case sends something hostile or broken (malformed msgpack, forged tokens,
look-alike handles, other people's DM rooms, floods, compression, slow handshakes...)
and checks the documented answer: an ``error`` code with the connection left open, or
a close code, or an HTTP refusal. Around every case ``bob`` and ``carol`` exchange
messages, before and after, and a new user signs in after it: the server keeps serving
and nobody else is affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from websockets.exceptions import InvalidStatus

from tests.faults.closing import read_until_closed
from tests.faults.rawws import OP_CLOSE, RawWebSocket
from tests.wire import WireClient, signed_in

LOBBY = "#lobby"
HELLO_TIMEOUT = 1.0
MAX_CONNS_PER_IP = 8

Case = Callable[["Ctx"], Awaitable[None]]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return register


@dataclass
class Ctx:
    server: Any
    bob: WireClient
    carol: WireClient
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    @contextlib.asynccontextmanager
    async def mallory(self, name: str = "mallory") -> AsyncIterator[WireClient]:
        async with signed_in(self.url, name) as client:
            yield client


# --- helpers ---------------------------------------------------------------------------


def pack(frame: Any) -> bytes:
    return msgpack.packb(frame, use_bin_type=True)


async def expect_error(client: WireClient, data: bytes, code: str, ref: Any = ...) -> dict:
    """Send raw bytes; the next ``error`` must carry ``code`` (and ``ref``, if given)."""
    await client.send_raw(data)
    error = await client.recv_until("error")
    assert error["code"] == code, error
    if ref is not ...:
        assert error.get("ref") == ref, error
    return error


async def assert_still_open(client: WireClient) -> None:
    """The connection survived: a valid request still gets its answer."""
    await client.send({"t": "join", "room": LOBBY})
    joined = await client.recv_until("joined")
    assert joined["room"] == LOBBY


async def exchange(ctx: Ctx, tag: str) -> None:
    """bob → carol and carol → bob in #lobby, each acked and delivered."""
    for sender, receiver in ((ctx.bob, ctx.carol), (ctx.carol, ctx.bob)):
        ident = f"{tag}-{id(sender)}"
        await sender.send({"t": "say", "room": LOBBY, "text": tag, "id": ident})
        ack = await sender.recv_until("ack", id=ident)
        msg = await receiver.recv_until("msg", id=ident)
        assert msg["seq"] == ack["seq"] and msg["text"] == tag


# --- malformed msgpack and frames (the connection stays open) --------------------------

STR32_HUGE = b"\xdb\xff\xff\xff\xff" + b"x" * 16
ARRAY32_HUGE = b"\xdd\xff\xff\xff\xff" + b"\x01" * 16
MAP32_HUGE = b"\xdf\xff\xff\xff\xff" + b"\xa1t\xa1x"
DEEP = {"t": "typing", "room": LOBBY, "x": [[[[[[[[[1]]]]]]]]]}

MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty-message": (b"", "bad_frame"),
    "truncated-map": (pack({"t": "join", "room": LOBBY})[:-3], "bad_frame"),
    "trailing-bytes": (pack({"t": "join", "room": LOBBY}) + b"\xc0", "bad_frame"),
    "reserved-byte-0xc1": (b"\xc1", "bad_frame"),
    "not-a-map-array": (pack(["join", LOBBY]), "bad_frame"),
    "not-a-map-int": (pack(42), "bad_frame"),
    "invalid-utf8": (b"\x82\xa1t\xa4join\xa4room\xa3\xff\xfe\xfd", "bad_frame"),
    "surrogate-in-str": (b"\x82\xa1t\xa4join\xa4room\xa3\xed\xa0\x80", "bad_frame"),
    "int-key": (b"\x82\xa1t\xa4join\x01\xa1x", "bad_frame"),
    "bin-key-nested": (b"\x83\xa1t\xa4join\xa4room\xa6#lobby\xa1x\x81\xc4\x01k\x01", "bad_frame"),
    "t-missing": (pack({"room": LOBBY}), "bad_frame"),
    "t-not-a-string": (pack({"t": 5, "room": LOBBY}), "bad_frame"),
    "str32-length-4gb": (b"\x81\xa1t" + STR32_HUGE, "bad_frame"),
    "array32-length-4g": (b"\x82\xa1t\xa4join\xa1x" + ARRAY32_HUGE, "bad_frame"),
    "map32-length-4g": (b"\x82\xa1t\xa4join\xa1x" + MAP32_HUGE, "bad_frame"),
    "nesting-9-levels": (pack(DEEP), "bad_frame"),
    "nesting-50000-levels": (b"\x83\xa1t\xa6typing\xa4room\xa6#lobby\xa1x"
                             + b"\x91" * 50_000 + b"\x01", "bad_frame"),
    "ext-type-under-unknown-key": (
        pack({"t": "typing", "room": LOBBY, "x": msgpack.ExtType(5, b"boom")}), "bad_frame"),
    "timestamp-ext": (b"\x83\xa1t\xa6typing\xa4room\xa6#lobby\xa1x\xd6\xff\x00\x00\x00\x01",
                      "bad_frame"),
    "text-is-an-int": (pack({"t": "say", "room": LOBBY, "text": 5, "id": "w1"}), "bad_frame"),
    "text-is-bin": (pack({"t": "say", "room": LOBBY, "text": b"hi", "id": "w2"}), "bad_frame"),
    "limit-is-a-bool": (pack({"t": "history", "room": LOBBY, "limit": True}), "bad_frame"),
    "seq-is-a-float": (pack({"t": "read", "room": LOBBY, "seq": 1.5}), "bad_frame"),
    "since-is-a-string": (pack({"t": "join", "room": LOBBY, "since": "5"}), "bad_frame"),
    "after-negative": (pack({"t": "history", "room": LOBBY, "after": -1}), "bad_frame"),
    "before-uint64-max": (pack({"t": "history", "room": LOBBY, "before": 2**64 - 1}),
                          "bad_frame"),
    "read-seq-negative": (pack({"t": "read", "room": LOBBY, "seq": -5}), "bad_frame"),
    "since-negative": (pack({"t": "join", "room": LOBBY, "since": -1}), "bad_frame"),
    "since-2-to-the-63": (pack({"t": "join", "room": LOBBY, "since": 2**63}), "bad_frame"),
    "seq-is-a-string": (pack({"t": "read", "room": LOBBY, "seq": "7"}), "bad_frame"),
    "limit-huge": (pack({"t": "history", "room": LOBBY, "limit": 2**40}), "bad_frame"),
    "before-and-after": (pack({"t": "history", "room": LOBBY, "before": 5, "after": 1}),
                         "bad_frame"),
    "limit-201": (pack({"t": "history", "room": LOBBY, "limit": 201}), "bad_frame"),
    "limit-0": (pack({"t": "history", "room": LOBBY, "limit": 0}), "bad_frame"),
    "text-4097-chars": (pack({"t": "say", "room": LOBBY, "text": "é" * 4097, "id": "w3"}),
                        "too_long"),
    "display-65-chars": (pack({"t": "presence", "display": "d" * 65}), "too_long"),
    "psm-129-chars": (pack({"t": "presence", "psm": "p" * 129}), "too_long"),
    "id-65-chars": (pack({"t": "say", "room": LOBBY, "text": "x", "id": "i" * 65}), "bad_frame"),
    "id-with-control-char": (pack({"t": "say", "room": LOBBY, "text": "x", "id": "a\x1bb"}),
                             "bad_frame"),
    "text-with-bidi-override": (pack({"t": "say", "room": LOBBY, "text": "a\u202eb",
                                      "id": "w4"}), "bad_frame"),
    "display-with-newline": (pack({"t": "presence", "display": "a\nb"}), "bad_frame"),
    "status-offline": (pack({"t": "presence", "status": "offline"}), "bad_frame"),
    "room-upper-case": (pack({"t": "join", "room": "#Lobby"}), "bad_frame"),
    "room-too-long": (pack({"t": "join", "room": "#" + "r" * 33}), "bad_frame"),
    "dm-room-not-canonical": (pack({"t": "join", "room": "dm:carol:bob"}), "bad_frame"),
    "dm-room-with-self": (pack({"t": "join", "room": "dm:mallory:mallory"}), "bad_frame"),
    "unknown-type": (pack({"t": "teleport", "to": "bob"}), "unknown_type"),
    "second-hello": (pack({"t": "hello", "v": 1, "name": "mallory"}), "bad_frame"),
    "contact-op-added-you": (pack({"t": "contact", "op": "added_you", "name": "bob"}),
                             "bad_frame"),
    "say-room-and-to": (pack({"t": "say", "room": LOBBY, "to": "bob", "text": "x",
                              "id": "w5"}), "bad_frame"),
    "say-not-member": (pack({"t": "say", "room": "#elsewhere", "text": "x", "id": "w6"}),
                       "not_member"),
    "say-to-nobody": (pack({"t": "say", "to": "nobody", "text": "x", "id": "w7"}),
                      "no_such_user"),
}


def _malformed_case(data: bytes, code: str) -> Case:
    async def run(ctx: Ctx) -> None:
        async with ctx.mallory() as mallory:
            await expect_error(mallory, data, code)
            await assert_still_open(mallory)

    return run


for _name, (_data, _code) in MALFORMED.items():
    case(f"frame/{_name}")(_malformed_case(_data, _code))


# --- handles --------------------------------------------------------------------------

LOOK_ALIKES = {
    "control-char": "ma\x07llory",
    "bidi-override": "mal\u202elory",
    "zero-width-space": "mal\u200blory",
    "zero-width-joiner": "mal\u200dlory",
    "cyrillic-a": "c\u0430rol",  # looks like "carol"
    "fullwidth": "\uff43arol",
    "space": "car ol",
    "leading-underscore": "_carol",
    "25-chars": "c" * 25,
}


def _handle_case(handle: str) -> Case:
    async def run(ctx: Ctx) -> None:
        async with WireClient.connect(ctx.url) as client:
            error = await client.hello(handle)
            assert error["t"] == "error" and error["code"] == "name_invalid", error
            # The connection stays open for another try.
            assert (await client.hello("mallory"))["t"] == "welcome"

    return run


for _name, _handle in LOOK_ALIKES.items():
    case(f"handle/{_name}")(_handle_case(_handle))


async def expect_hello_refused(ctx: Ctx, name: str, code: str, close: int,
                               token: str | None = None) -> None:
    async with WireClient.connect(ctx.url) as client:
        error = await client.hello(name, token=token)
        assert error["t"] == "error" and error["code"] == code, error
        assert await client.wait_closed() == close


@case("handle/name-is-an-int")
async def _name_int(ctx: Ctx) -> None:
    async with WireClient.connect(ctx.url) as client:
        await expect_error(client, pack({"t": "hello", "v": 1, "name": 42}), "bad_frame", "hello")
        assert (await client.hello("mallory"))["t"] == "welcome"


@case("frame/huge-after-is-an-empty-page")
async def _huge_after(ctx: Ctx) -> None:
    async with ctx.mallory() as mallory:
        await assert_still_open(mallory)
        await mallory.send({"t": "history", "room": LOBBY, "after": 2**63 - 1})
        page = await mallory.recv_until("history")
        assert page["msgs"] == [] and page["more"] is False


@case("handle/case-variant-of-taken-name")
async def _case_variant(ctx: Ctx) -> None:
    await expect_hello_refused(ctx, "CaRoL", "name_taken", 4002)


@case("handle/reserved-system")
async def _reserved(ctx: Ctx) -> None:
    await expect_hello_refused(ctx, "System", "name_taken", 4002)


@case("handle/a-bots-name")
async def _bots_name(ctx: Ctx) -> None:
    async with signed_in(ctx.url, "echobot", bot=True):
        await expect_hello_refused(ctx, "EchoBot", "name_taken", 4002)


# --- tokens -----------------------------------------------------------------------------


@case("token/forged")
async def _forged_token(ctx: Ctx) -> None:
    forged = ctx.tokens["carol"][:-4] + "AAAA"
    await expect_hello_refused(ctx, "carol", "bad_token", 4003, token=forged)


@case("token/another-users")
async def _other_token(ctx: Ctx) -> None:
    await expect_hello_refused(ctx, "carol", "bad_token", 4003, token=ctx.tokens["bob"])


@case("token/257-chars")
async def _long_token(ctx: Ctx) -> None:
    async with WireClient.connect(ctx.url) as client:
        error = await client.hello("carol", token="t" * 257)
        assert error["code"] == "bad_frame", error


@case("token/unsupported-version")
async def _version(ctx: Ctx) -> None:
    async with WireClient.connect(ctx.url) as client:
        await client.send({"t": "hello", "v": 2, "name": "carol", "token": ctx.tokens["carol"]})
        assert (await client.recv())["code"] == "unsupported_version"
        assert await client.wait_closed() == 4004


# --- other people's DM rooms ------------------------------------------------------------

DM_BC = "dm:bob:carol"
DM_PROBES = {
    "join": {"t": "join", "room": DM_BC, "since": 0},
    "say": {"t": "say", "room": DM_BC, "text": "psst", "id": "p1"},
    "history": {"t": "history", "room": DM_BC, "after": 0},
    "read": {"t": "read", "room": DM_BC, "seq": 1},
    "typing": {"t": "typing", "room": DM_BC},
}


def _dm_case(frame: dict[str, Any]) -> Case:
    async def run(ctx: Ctx) -> None:
        # bob and carol have a conversation; mallory must not see or touch it.
        await ctx.bob.send({"t": "say", "to": "carol", "text": "secret", "id": "dm-secret"})
        await ctx.bob.recv_until("ack", id="dm-secret")
        await ctx.carol.recv_until("msg", id="dm-secret")
        async with ctx.mallory() as mallory:
            error = await expect_error(mallory, pack(frame), "forbidden")
            assert "secret" not in repr(mallory.seen), "a DM leaked"
            assert error["code"] == "forbidden"
            await assert_still_open(mallory)
        await ctx.carol.expect_silence("msg", timeout=0.1)  # nothing new reached carol
        page = [f for f in mallory.seen if f.get("t") in ("history", "joined", "msg")]
        assert all(f.get("room") != DM_BC for f in page), page

    return run


for _name, _frame in DM_PROBES.items():
    case(f"dm/{_name}-into-others-dm")(_dm_case(_frame))


@case("dm/self-dm")
async def _self_dm(ctx: Ctx) -> None:
    async with ctx.mallory() as mallory:
        await expect_error(mallory, pack({"t": "say", "to": "Mallory", "text": "me",
                                          "id": "s1"}), "bad_frame", "s1")
        await assert_still_open(mallory)


@case("dm/self-nudge")
async def _self_nudge(ctx: Ctx) -> None:
    async with ctx.mallory() as mallory:
        await expect_error(mallory, pack({"t": "nudge", "to": "mallory", "id": "n1"}),
                           "bad_frame", "n1")
        await assert_still_open(mallory)


@case("dm/nudge-flood")
async def _nudge_flood(ctx: Ctx) -> None:
    async with ctx.mallory() as mallory:
        for i in range(40):
            await mallory.send({"t": "nudge", "to": "bob", "id": f"nf{i}"})
        # One nudge is stored; the rest are refused with retry_ms and end in 4008.
        assert await read_until_closed(mallory) == 4008
    # The first nudge's ack may be lost with the 4008 close (it is sent at commit, and the
    # flood's refusals come first); a client would get it by retrying the id.
    assert sum(f["t"] == "ack" for f in mallory.seen) <= 1
    limited = [f for f in mallory.seen if f.get("code") == "rate_limited"]
    assert len(limited) >= 20 and all(f["retry_ms"] > 0 for f in limited)
    # The stored one reaches bob (waited for with the usual timeout: a loaded machine may
    # take more than a moment), and no second one follows it.
    nudges = [await ctx.bob.recv_until("msg", kind="nudge")]
    with contextlib.suppress(TimeoutError):
        while True:
            frame = await ctx.bob.recv_until("msg", timeout=0.3, kind="nudge")
            nudges.append(frame)
    assert len(nudges) == 1


# --- the transport ------------------------------------------------------------------------


@case("transport/text-message")
async def _text_message(ctx: Ctx) -> None:
    async with ctx.mallory() as mallory:
        await mallory.send_raw('{"t": "join", "room": "#lobby"}')
        assert await mallory.wait_closed() == 1003


@case("transport/oversize-frame")
async def _oversize(ctx: Ctx) -> None:
    async with ctx.mallory() as mallory:
        big = pack({"t": "say", "room": LOBBY, "text": "x", "id": "big",
                    "pad": "x" * ctx.server.config.max_frame})
        await mallory.send_raw(big)
        assert await mallory.wait_closed() == 1009


@case("transport/compression-bomb")
async def _compression_bomb(ctx: Ctx) -> None:
    ws = await RawWebSocket.open(ctx.url, {
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    try:
        assert ws.status == 101
        assert "sec-websocket-extensions" not in ws.response_headers, "compression negotiated"
        await ws.send(pack({"t": "hello", "v": 1, "name": "mallory"}))
        _, payload = await ws.recv()
        assert msgpack.unpackb(payload)["t"] == "welcome"
        # 64 MiB of zeros deflated to ~64 KiB: inflating it would be the bomb.
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = deflate.compress(b"\0" * (64 << 20)) + deflate.flush(zlib.Z_SYNC_FLUSH)
        bomb = bomb[:-4]  # permessage-deflate drops the sync flush's tail
        await ws.send(bomb[: ctx.server.config.max_frame - 16], rsv1=True)
        assert await ws.recv_close() == 1002  # RSV1 without the extension: protocol error
    finally:
        ws.close()


@case("transport/slowloris-handshake")
async def _slowloris(ctx: Ctx) -> None:
    from tests.faults.rawws import upgrade_request

    host, port = ctx.server.config.host, ctx.server.port
    reader, writer = await asyncio.open_connection(host, port)
    request = upgrade_request(ctx.url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    closed = False
    try:
        for byte in request:  # one byte per second, like a slowloris
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                    closed = True
                    break
            if loop.time() - started > HELLO_TIMEOUT + 5:
                break
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    finally:
        writer.close()
    assert closed, "the server waited for a slow handshake without end"


@case("transport/no-hello")
async def _no_hello(ctx: Ctx) -> None:
    async with WireClient.connect(ctx.url) as client:
        assert await client.wait_closed(timeout=HELLO_TIMEOUT + 4) == 4001


@case("transport/frames-before-hello")
async def _before_hello(ctx: Ctx) -> None:
    async with WireClient.connect(ctx.url) as client:
        await expect_error(client, pack({"t": "history", "room": LOBBY}), "hello_required",
                           "history")
        assert (await client.hello("mallory"))["t"] == "welcome"


@case("transport/too-many-connections-from-one-ip")
async def _too_many(ctx: Ctx) -> None:
    opened = []
    try:
        with pytest.raises(InvalidStatus) as refused:
            for _ in range(MAX_CONNS_PER_IP + 1):
                opened.append(await WireClient.open(ctx.url))
        assert refused.value.response.status_code == 429
        assert len(opened) == MAX_CONNS_PER_IP - 2  # bob and carol hold two
    finally:
        for client in opened:
            await client.close()


@case("transport/bad-origin")
async def _bad_origin(ctx: Ctx) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with WireClient.connect(ctx.url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403


@case("transport/no-subprotocol")
async def _no_subprotocol(ctx: Ctx) -> None:
    ws = await RawWebSocket.open(ctx.url, {"Sec-WebSocket-Protocol": "chat"})
    try:
        assert ws.status in (400, 426)
    finally:
        ws.close()


@case("transport/close-frame-garbage")
async def _close_garbage(ctx: Ctx) -> None:
    ws = await RawWebSocket.open(ctx.url)
    try:
        await ws.send(b"\x03", OP_CLOSE)  # a close payload of 1 byte is invalid
        assert await ws.recv_close() == 1002
    finally:
        ws.close()


# --- the test -----------------------------------------------------------------------------


async def test_enough_cases() -> None:
    assert len(CASES) >= 40, len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_bad_input(server_factory: Any, name: str) -> None:
    server = await server_factory(
        hello_timeout=HELLO_TIMEOUT,
        max_conns_per_ip=MAX_CONNS_PER_IP,
        allowed_origins=["https://cfm.example"],
    )
    async with signed_in(server.url, "bob") as bob, signed_in(server.url, "carol") as carol:
        for client in (bob, carol):
            await client.send({"t": "join", "room": LOBBY})
            await client.recv_until("joined")
        ctx = Ctx(server, bob, carol, {"bob": bob.token or "", "carol": carol.token or ""})
        await exchange(ctx, "before")
        await asyncio.wait_for(CASES[name](ctx), 30)
        await exchange(ctx, "after")
        # And the server still takes new users.
        async with signed_in(server.url, "dave") as dave:
            assert dave.welcome["name"] == "dave"
