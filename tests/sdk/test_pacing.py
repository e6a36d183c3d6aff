"""The SDK paces itself by the server's advertised limits: the project's own clients are
never refused for their rate, let alone closed with 4008, at the server's defaults.

Both tests run a real server at its default rate limits. Only the per-address
connection cap is raised where hundreds of users share 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cfm_common.bot import Bot
from cfm_common.client import ConnectionState, StateChanged
from cfm_common.frames import Error, Msg
from tests.sdk.conftest import Recorder
from tests.wire import WireClient, eventually


def closes(server: Any, code: int) -> float:
    server.metrics.render()  # brings the counts up to date
    return server.metrics.registry.get_sample_value(
        "cfm_closes_total", {"code": str(code)}) or 0.0


def test_the_client_paces_every_bucket_the_server_advertises() -> None:
    """The frame → bucket table is one (cfm_common.rules.RATE_KIND, used by the server
    and the SDK); every bucket it names is one the server advertises and limits."""
    from cfm_common.rules import RATE_KIND
    from cfm_server.config import RATE_KINDS

    assert set(RATE_KIND.values()) == set(RATE_KINDS)


async def test_a_reader_that_marks_each_message_read_is_never_closed(
    server: Any, clients: Any
) -> None:
    # alice sends bob 250 DMs at 19/s (under the say limit, 20/s); bob marks each one read
    # as it comes, faster than the read limit (10/s, burst 40) would let them all through.
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    # Contacts of each other: DMs between them are not a stranger's (which a server may
    # limit per user, far below the say rate).
    await alice.contact("add", "bob")
    await bob.contact("add", "alice")
    events = Recorder(bob)
    room = "dm:alice:bob"
    marked = 0

    async def mark_each() -> None:
        nonlocal marked
        while marked < 250:
            done = marked
            await events.wait(lambda r, done=done: len(r.msgs(room)) > done, timeout=60)
            for msg in events.msgs(room)[marked:]:
                await bob.mark_read(room, msg.seq)
                marked += 1

    marking = asyncio.create_task(mark_each())
    loop = asyncio.get_running_loop()
    start = loop.time()
    acks = []
    for i in range(250):
        # 19 per second: message i goes at i/19 s (the sleep is the sending rate, not a sync)
        await asyncio.sleep(max(0.0, start + i / 19 - loop.time()))
        acks.append(asyncio.create_task(alice.say(f"m{i}", to="bob", id=f"m{i}")))
    assert [a.seq for a in await asyncio.wait_for(asyncio.gather(*acks), 60)] == \
        list(range(1, 251))
    await asyncio.wait_for(marking, 60)
    await eventually(lambda: bob.backlog == 0, timeout=30)

    # The last mark reached the server: a new session of bob's is told so.
    again = clients(server.url, "bob", token=bob.token)
    welcome = await again.connect()
    assert {s.room: s.read for s in welcome.rooms}[room] == 250

    states = [e.state for e in events.events if isinstance(e, StateChanged)]
    assert ConnectionState.RECONNECTING not in states and bob.state is ConnectionState.CONNECTED
    refused = [e for e in events.events if isinstance(e, Error)]
    assert refused == [], "the server refused frames of bob's"
    assert closes(server, 4008) == 0


async def test_a_bot_answers_200_users_at_once_without_a_refusal(
    server_factory: Any, tmp_path: Any
) -> None:
    server = await server_factory(max_conns_per_ip=300)  # 200 users on one address
    bot = Bot(server.url, "scorer", token_file=False)
    states: list[StateChanged] = []
    refusals: list[Error] = []

    @bot.on_event
    async def watch(event: Any) -> None:
        if isinstance(event, StateChanged):
            states.append(event)
        elif isinstance(event, Error):
            refusals.append(event)

    @bot.on_message
    async def score(msg: Msg) -> None:
        await bot.reply(msg, f"score for {msg.sender}: {len(msg.text)}")

    await bot.start()
    users = [await WireClient.open(server.url) for _ in range(200)]
    try:
        for i, user in enumerate(users):
            assert (await user.hello(f"user{i}"))["t"] == "welcome"
            # The bot in their contact lists, as the chat window adds it: its answers
            # are not DMs from a stranger (which a server may limit per user).
            await user.send({"t": "contact", "op": "add", "name": "scorer"})
            await user.recv_until("contact")
        # All at once: every user's say is written before any reply is read.
        await asyncio.gather(*(user.send({"t": "say", "to": "scorer", "text": "!score",
                                          "id": "q"}) for user in users))
        replies = await asyncio.wait_for(asyncio.gather(
            *(user.recv_until("msg", timeout=90, **{"from": "scorer"}) for user in users)), 100)
        assert [r["text"] for r in replies] == [f"score for user{i}: 6" for i in range(200)]
        # The read marks (200 rooms: nothing to coalesce) drain at the read limit.
        await eventually(lambda: bot.client.backlog == 0, timeout=60)
        assert bot.client.pending == 0
    finally:
        await asyncio.gather(*(user.close() for user in users))
        await bot.stop()

    assert ConnectionState.RECONNECTING not in [s.state for s in states], \
        "the bot was disconnected"
    assert refusals == [], "the server refused frames of the bot's"
    assert closes(server, 4008) == 0


async def test_a_request_waiting_for_the_rate_budget_does_not_time_out(
    server_factory: Any, clients: Any
) -> None:
    # 18 requests (a history page and a member list of 9 rooms) on a history budget of
    # 2/s, burst 4: the last ones go out some 7 s later, well past a 1 s request_timeout
    # — which counts from the moment a request could be sent, not from when it was
    # queued behind the others.
    server = await server_factory(history_rate=2.0, history_burst=4)
    alice = clients(server.url, "alice", request_timeout=1.0)
    await alice.connect()
    rooms = ["#lobby"] + [f"#r{i}" for i in range(8)]
    for room in rooms:
        await alice.join(room)
    calls = [alice.history(room, after=0) for room in rooms]
    calls += [alice.members(room) for room in rooms]
    answers = await asyncio.wait_for(asyncio.gather(*calls), 30)
    assert [a.room for a in answers] == rooms * 2
    assert closes(server, 4008) == 0


async def test_long_messages_stay_under_the_inbound_byte_budget(
    server: Any, clients: Any
) -> None:
    # 150 says of 4,000 characters as fast as the client may: 20/s of them is some
    # 80 KB/s, more than the server's default inbound budget (64 KiB/s after a 256 KiB
    # burst). The client paces its bytes too: nothing is dropped unread.
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.join("#lobby")
    events = Recorder(alice)
    acks = await asyncio.wait_for(asyncio.gather(
        *(alice.say(f"{i:04d}" + "x" * 3996, room="#lobby", id=f"l{i}") for i in range(150))),
        60)
    assert [a.seq for a in acks] == list(range(1, 151))
    server.metrics.render()
    dropped = server.metrics.registry.get_sample_value(
        "cfm_frames_in_total", {"type": "over_budget"}) or 0.0
    assert dropped == 0
    assert [e for e in events.events if isinstance(e, Error)] == []
    assert closes(server, 4008) == 0


def test_welcome_tells_every_per_user_bucket_and_the_sdk_knows_what_each_covers() -> None:
    from cfm_common.rules import USER_RATE_COVERS
    from cfm_server.config import RATE_KINDS, USER_RATE_KINDS, ServerConfig

    config = ServerConfig()
    advertised = config.client_limits()["user_rates"]
    per_user = {kind.removeprefix("user_") for kind in USER_RATE_KINDS}
    assert set(advertised) == per_user
    assert advertised["contact"] == {"per_s": config.user_contact_rate,
                                     "burst": config.user_contact_burst}
    assert set(USER_RATE_COVERS) <= per_user
    assert {k for covered in USER_RATE_COVERS.values() for k in covered} <= set(RATE_KINDS)


def errors(server: Any, code: str) -> float:
    server.metrics.render()
    return server.metrics.registry.get_sample_value(
        "cfm_errors_total", {"code": code}) or 0.0


async def test_contact_edits_are_paced_by_the_per_user_bucket(server: Any, clients: Any) -> None:
    # The per-user contact bucket (1/s, burst 20) is tighter than the session's (2/s, 20):
    # 26 edits in a row go out without one refusal, the last ones a second apart.
    alice = clients(server.url, "alice")
    await alice.connect()
    for name in ("bob", "carol"):
        await clients(server.url, name).connect()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(13):
        for name in ("bob", "carol"):
            await alice.contact("add" if i % 2 == 0 else "remove", name)
    took = loop.time() - start
    assert errors(server, "rate_limited") == 0
    assert took > 4  # paced: 26 edits, 20 at once then one a second (not 2 a second)


async def test_long_texts_are_paced_by_the_users_text_budget(
    server_factory: Any, clients: Any
) -> None:
    # Six messages of 4,096 emoji (16 KiB each) on a text budget of 8 KiB/s after a 32 KiB
    # burst (welcome.limits.user_rates.text): the client spends its copy of the budget by
    # each say's text and waits, so the server refuses none of them.
    server = await server_factory(user_text_rate=8192.0, user_text_burst=32768)
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.join("#lobby")
    acks = await asyncio.wait_for(asyncio.gather(
        *(alice.say("\U0001F600" * 4096, room="#lobby", id=f"t{i}") for i in range(6))), 60)
    assert [a.seq for a in acks] == list(range(1, 7))
    assert errors(server, "rate_limited") == 0
    assert closes(server, 4008) == 0
