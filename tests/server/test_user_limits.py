"""Limits per user and per address, not only per session (issue 10, item 7): more
sessions give one person no more says, stranger DMs, contact requests or rooms, and one
address cannot mint handles by the thousand."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.wire import WireClient, eventually, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

REMOTE = {"X-Forwarded-For": "203.0.113.9"}


def errors(client: WireClient) -> list[dict[str, Any]]:
    return [f for f in client.seen if f["t"] == "error"]


async def _settle(client: WireClient, n: int) -> None:
    """Read until ``n`` of the client's frames were answered (ack, contact or error)."""
    answered = 0
    while answered < n:
        frame = await client.recv()
        answered += frame["t"] in ("ack", "error", "contact", "joined")


async def test_a_users_sessions_share_one_say_bucket(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#den"})
        await alice.recv_until("joined")
        async with signed_in(server.url, "alice", token=alice.token) as second, \
                signed_in(server.url, "alice", token=alice.token) as third:
            sessions = (alice, second, third)
            for n in range(30):  # 30 each: within each session's burst of 60
                for i, session in enumerate(sessions):
                    await session.send({"t": "say", "room": "#den", "text": "x",
                                        "id": f"{i}-{n}"})
            for session in sessions:
                await _settle(session, 30)
            refused = [e for s in sessions for e in errors(s)]
    assert refused and {e["code"] for e in refused} == {"rate_limited"}
    assert all(e["retry_ms"] > 0 and e["ref"].count("-") == 1 for e in refused)


async def test_dms_to_strangers_have_their_own_bucket(server) -> None:
    async with (
        signed_in(server.url, "alice") as alice,
        signed_in(server.url, "bob"),
        signed_in(server.url, "carol") as carol,
    ):
        await carol.send({"t": "contact", "op": "add", "name": "alice"})
        await carol.recv_until("contact")
        # Read here, or _settle below would count it as an answer (and leave one unread).
        await alice.recv_until("contact", op="added_you")
        for n in range(25):  # bob never listed alice
            await alice.send({"t": "say", "to": "bob", "text": "buy now", "id": f"b{n}"})
        await _settle(alice, 25)
        assert {e["code"] for e in errors(alice)} == {"rate_limited"}
        # The error names the limit (it read "too many say frames", like the say rate).
        assert {e["msg"] for e in errors(alice)} == {
            "too many messages to people who have not added you"}
        alice.seen.clear()
        for n in range(25):  # carol did: not a stranger
            await alice.send({"t": "say", "to": "carol", "text": "hi", "id": f"c{n}"})
        await _settle(alice, 25)
        assert errors(alice) == []


async def test_answers_to_people_who_wrote_first_are_not_stranger_dms(server) -> None:
    """A bot of anyone's answers everyone who writes to it, listed or not: its replies
    are not unsolicited, so the stranger bucket does not hold them back."""
    users = [f"user{n}" for n in range(30)]
    async with signed_in(server.url, "echobot") as bot:
        for name in users:  # nobody lists the bot; each writes to it first
            async with signed_in(server.url, name) as user:
                await user.send({"t": "say", "to": "echobot", "text": "!ping", "id": "p"})
                await user.recv_until("ack", id="p")
        for n, name in enumerate(users):
            await bot.send({"t": "say", "to": name, "text": "pong", "id": f"r{n}"})
        await _settle(bot, len(users))
        assert errors(bot) == []
        # Someone who never wrote is still a stranger to it.
        async with signed_in(server.url, "quiet"):
            for n in range(25):
                await bot.send({"t": "say", "to": "quiet", "text": "hi", "id": f"q{n}"})
            await _settle(bot, 25)
        assert {e["code"] for e in errors(bot)} == {"rate_limited"}


async def test_contact_requests_are_limited_per_user(server) -> None:
    async with (
        signed_in(server.url, "bob"),
        signed_in(server.url, "alice") as alice,
        signed_in(server.url, "alice", token=alice.token) as second,
    ):
        for n in range(15):  # 30 in all; each session's burst is 20
            for session in (alice, second):
                op = "add" if n % 2 == 0 else "remove"
                await session.send({"t": "contact", "op": op, "name": "bob"})
        for session in (alice, second):  # echoes go to both: sync on an answer
            await session.send({"t": "history", "room": "#nowhere"})
            await session.recv_until("error", code="no_such_room")
        refused = [e for e in errors(alice) + errors(second) if e["ref"] == "contact"]
    assert refused and {e["code"] for e in refused} == {"rate_limited"}


async def test_new_rooms_are_limited_and_memberships_capped(server_factory) -> None:
    server = await server_factory(max_rooms_per_user=12)
    async with signed_in(server.url, "alice") as alice:
        for n in range(12):
            await alice.send({"t": "join", "room": f"#r{n}"})
        await _settle(alice, 12)
        # The room bucket: a burst of 10 new rooms, then one every 5 s.
        refused = errors(alice)
        assert refused and {e["code"] for e in refused} == {"rate_limited"}
        mine = len(server.hub.users["alice"].rooms)
        assert mine == 12 - len(refused)
        async with signed_in(server.url, "bob") as bob:
            for n in range(4):  # rooms bob creates; joining them costs alice no bucket
                await bob.send({"t": "join", "room": f"#b{n}"})
                await bob.recv_until("joined")
        alice.seen.clear()
        for n in range(4):
            await alice.send({"t": "join", "room": f"#b{n}"})
        await _settle(alice, 4)
        # Up to the cap of 12 they are joined; past it refused.
        codes = [f.get("code") for f in alice.seen if f["t"] in ("joined", "error")]
        allowed = 12 - mine
        assert codes == [None] * allowed + ["forbidden"] * (4 - allowed)
        await alice.send({"t": "join", "room": "#r0"})  # a room she is in: fine
        await alice.recv_until("joined")
        await alice.send({"t": "leave", "room": "#r0"})
        await alice.recv_until("left")
        await alice.send({"t": "join", "room": "#b3"})
        await alice.recv_until("joined", room="#b3")


async def test_new_handles_per_address_are_limited_but_not_from_loopback(
    server_factory,
) -> None:
    server = await server_factory(trusted_proxies=["127.0.0.1"], signup_burst=2)
    async with WireClient.connect(server.url, additional_headers=REMOTE) as remote:
        for name in ("spam1", "spam2"):
            async with WireClient.connect(server.url, additional_headers=REMOTE) as c:
                assert (await c.hello(name))["t"] == "welcome"
        refused = await remote.hello("spam3")
        assert refused["code"] == "rate_limited" and refused["retry_ms"] > 0
        assert refused["ref"] == "hello"
        # Signing in to an existing handle is never limited.
        assert (await remote.hello("spam1", token=None))["code"] == "name_taken"
    for n in range(4):  # loopback: the local user, tests and benchmarks
        async with signed_in(server.url, f"local{n}"):
            pass


async def test_typing_and_presence_are_limited_per_user(server) -> None:
    """Both fan out (to a DM peer; to every contact and room member watching): three
    sessions of one user get no more of them than one session gets."""
    async with (
        signed_in(server.url, "bob") as bob,
        signed_in(server.url, "alice") as alice,
        signed_in(server.url, "alice", token=alice.token) as second,
        signed_in(server.url, "alice", token=alice.token) as third,
    ):
        sessions = (alice, second, third)
        for n in range(4):  # 12 of each in all; each session's bursts are 6 and 5
            for session in sessions:
                await session.send({"t": "typing", "to": "bob"})
                await session.send({"t": "presence", "psm": f"psm {n}"})
        for session in sessions:  # answers come in order: sync on a later one
            await session.send({"t": "history", "room": "#nowhere"})
            await session.recv_until("error", code="no_such_room")
        refused = [e for s in sessions for e in errors(s) if e["code"] == "rate_limited"]
        assert {e["ref"] for e in refused} == {"typing", "presence"}, refused
        await bob.send({"t": "history", "room": "#nowhere"})
        await bob.recv_until("error", code="no_such_room")
    typing_refused = sum(e["ref"] == "typing" for e in refused)
    assert sum(f["t"] == "typing" for f in bob.seen) == 12 - typing_refused


async def test_a_per_user_refusal_names_the_request_it_refuses(server_factory) -> None:
    """A join or contact request refused by the user's bucket carries the request's id
    as ``ref`` (docs/protocol.md, "Request ids"), so a client can match it and retry that
    request: with ``ref: "join"`` the SDK could not, and its joins timed out."""
    # The user's buckets tighter than the session's (burst 30 and 20): these refuse.
    server = await server_factory(user_room_burst=5, user_contact_burst=5)
    async with signed_in(server.url, "bob"), signed_in(server.url, "alice") as alice:
        for n in range(12):  # new rooms
            await alice.send({"t": "join", "room": f"#j{n}", "id": f"j{n}"})
        for n in range(12):  # contact requests
            op = "add" if n % 2 == 0 else "remove"
            await alice.send({"t": "contact", "op": op, "name": "bob", "id": f"c{n}"})
        await alice.send({"t": "history", "room": "#nowhere"})
        await alice.recv_until("error", code="no_such_room")
        refused = [e for e in errors(alice) if e["code"] == "rate_limited"]
    refs = {e["ref"] for e in refused}
    assert any(r.startswith("j") for r in refs) and any(r.startswith("c") for r in refs), refs
    assert refs <= {f"j{n}" for n in range(12)} | {f"c{n}" for n in range(12)}, refs


async def test_searches_are_limited_per_user(server) -> None:
    """A search costs the node milliseconds: three sessions of one user get no more of
    them than the user's bucket (10), though each session's own bucket (10) would take
    every one of theirs."""
    async with (
        signed_in(server.url, "alice") as alice,
        signed_in(server.url, "alice", token=alice.token) as second,
        signed_in(server.url, "alice", token=alice.token) as third,
    ):
        sessions = (alice, second, third)
        for n in range(6):  # 18 in all: within each session's burst of 10
            for i, session in enumerate(sessions):
                await session.send({"t": "search", "text": "hello", "id": f"q{i}-{n}"})
        for i, session in enumerate(sessions):  # answers come in order: the last one
            while (await session.recv()).get("ref") != f"q{i}-5":
                pass
        refused = [e for s in sessions for e in errors(s) if e["code"] == "rate_limited"]
        answered = [f for s in sessions for f in s.seen if f["t"] == "search"]
    assert refused, [e for s in sessions for e in errors(s)][:3]
    assert all(e["ref"].startswith("q") and e["retry_ms"] > 0 for e in refused)
    assert any("all your sessions" in e["msg"] for e in refused), refused
    assert len(answered) + len(refused) == 18
    assert 10 <= len(answered) < 18  # the user's burst, and a little refill meanwhile


async def test_the_text_a_user_stores_is_limited_in_bytes(server_factory) -> None:
    """The say bucket counts messages; a message of 4,096 emoji is 16 KiB. Four sessions
    of one user, three such messages each (192 KiB, within each session's say and byte
    budgets and the user's say bucket), store no more than the user's text bucket (here
    32 KiB and 1 KiB a second; by default one session's inbound budget): on a cluster
    that is Redis's memory. Short messages from another user go on."""
    server = await server_factory(user_text_rate=1024.0, user_text_burst=32768)
    big = "\U0001F600" * 4096
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#den"})
        await alice.recv_until("joined")
        async with (
            signed_in(server.url, "alice", token=alice.token) as second,
            signed_in(server.url, "alice", token=alice.token) as third,
            signed_in(server.url, "alice", token=alice.token) as fourth,
            signed_in(server.url, "bob") as bob,
        ):
            sessions = (alice, second, third, fourth)
            for n in range(3):
                for i, session in enumerate(sessions):
                    await session.send({"t": "say", "room": "#den", "text": big,
                                        "id": f"{i}-{n}"})
            for session in sessions:
                await _settle(session, 3)
            await bob.send({"t": "join", "room": "#den"})
            await bob.recv_until("joined")
            for n in range(20):
                await bob.send({"t": "say", "room": "#den", "text": "hi " * 30, "id": f"b{n}"})
            await _settle(bob, 20)
            refused = [e for s in sessions for e in errors(s)]
            stored = [f for s in sessions for f in s.seen if f["t"] == "ack"]
            assert errors(bob) == []
    assert refused and {e["code"] for e in refused} == {"rate_limited"}, refused
    assert all(e["retry_ms"] > 0 for e in refused)
    assert {e["msg"] for e in refused} == {
        "too much text from you (all your sessions together)"}
    assert 2 <= len(stored) < 12  # the burst's two, and a little refill meanwhile


async def test_an_ipv6_client_is_one_address_per_64(server_factory) -> None:
    """An IPv6 client holds a whole /64: counted by address, it could open connections
    and mint handles without end (2**64 addresses). Limits count it by its /64."""
    server = await server_factory(trusted_proxies=["127.0.0.1"], signup_burst=2,
                                  max_conns_per_ip=3)

    def via(host: int, net: str = "2001:db8:0:1") -> dict[str, Any]:
        return {"additional_headers": {"X-Forwarded-For": f"{net}::{host:x}"}}

    answers = []
    for n in range(3):  # three addresses of one /64
        async with WireClient.connect(server.url, **via(n + 1)) as client:
            answers.append(await client.hello(f"six{n}"))
    assert [a["t"] for a in answers] == ["welcome", "welcome", "error"]
    assert answers[2]["code"] == "rate_limited"
    async with WireClient.connect(server.url, **via(9, "2001:db8:0:2")) as other:
        assert (await other.hello("sixother"))["t"] == "welcome"  # another /64
    await eventually(lambda: not server._ip_counter.counts)  # the closed ones are gone
    held = [await WireClient.open(server.url, **via(n + 10)) for n in range(3)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with WireClient.connect(server.url, **via(20)):
                pass
        assert refused.value.response.status_code == 429
    finally:
        for client in held:
            await client.close()


async def test_dm_conversations_per_user_are_capped(server_factory) -> None:
    """Every DM room is a line of its users' welcome: strangers by the thousand, one DM
    each, made a victim's welcome too big to sign in with (1.16 MB for 19,000)."""
    server = await server_factory(max_dms_per_user=3)
    tokens = {}
    async with signed_in(server.url, "victim") as victim:
        for n in range(4):
            async with signed_in(server.url, f"stranger{n}") as stranger:
                tokens[n] = stranger.token
                await stranger.send({"t": "say", "to": "victim", "text": "hi", "id": "1"})
                await _settle(stranger, 1)
                answer = [f for f in stranger.seen if f["t"] in ("ack", "error")][-1]
                assert answer["t"] == ("ack" if n < 3 else "error"), answer
        assert answer["code"] == "forbidden" and answer["ref"] == "1"
        async with signed_in(server.url, "stranger0", token=tokens[0]) as again:
            # an existing conversation goes on
            await again.send({"t": "say", "to": "victim", "text": "again", "id": "2"})
            await again.recv_until("ack")
        await victim.send({"t": "say", "to": "stranger3", "text": "hm", "id": "v"})
        assert (await victim.recv_until("error"))["code"] == "forbidden"
    async with signed_in(server.url, "victim", token=victim.token) as back:
        assert len(back.welcome["rooms"]) == 3


async def test_sign_ins_are_limited_per_user(server_factory) -> None:
    # A sign-in reads the user's rooms (a cluster node: subscribes to each and counts its
    # unread in Redis, ~630 Redis commands for a user in 200 rooms): 8 connections
    # reconnecting one such account in a loop made 110,000 Redis commands a second.
    server = await server_factory()
    async with signed_in(server.url, "alice") as alice:  # a sign-up: not a sign-in
        token = alice.token
    welcomed = 0
    for _ in range(100):  # dealt over both nodes on a cluster: one budget (burst 30, 1/s)
        async with WireClient.connect(server.url) as again:
            answer = await again.hello("alice", token=token)
        if answer["t"] != "welcome":
            break
        welcomed += 1
    assert 30 <= welcomed < 100, welcomed
    async with WireClient.connect(server.url) as late:
        refused = await late.hello("alice", token=token)
        assert (refused["code"], refused["ref"]) == ("rate_limited", "hello")
        assert refused["retry_ms"] > 0 and "sign-ins" in refused["msg"]
        # A wrong token is still told so (it is not counted, nor a way to lock alice out).
        assert (await late.hello("alice", token="not-hers"))["code"] == "bad_token"
    async with signed_in(server.url, "bob"):  # others sign in as ever
        pass
