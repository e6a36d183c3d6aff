"""A nudge pressed while the connection is down: said so at once, sent once it is back,
and no wrong "is offline" note. Real apps, a real server, a real network cut."""

from __future__ import annotations

from textual.widgets import Static

from cfm_common import rules
from cfm_common._backoff import Backoff
from tests.tui.helpers import alice_and_bob, plain, transcript_text, wait_until

DM = rules.dm_room("alice", "bob")


async def test_a_nudge_while_disconnected_waits_visibly(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        alice.contact("add", "bob")
        await wait_until(pa, lambda: "bob" in alice.state.contacts, "bob is a contact")
        await wait_until(pa, lambda: alice.state.person("bob").online, "bob online")
        await alice.open_dm("bob")
        await pa.pause()
        # Cut alice's connection (no close frame) and keep her from coming back on her
        # own, so the nudge is surely pressed while she is down.
        alice.session.client._backoff = Backoff(60.0, 60.0)
        for session in list(server.hub.users["alice"].sessions):
            session.ws.transport.abort()
        bar = alice.main.query_one("#connection", Static)
        await wait_until(pa, lambda: "Reconnecting" in plain(bar), "alice is down")
        await pa.press("ctrl+g")
        await wait_until(pa, lambda: "will be sent when the connection is back"
                         in transcript_text(alice, DM), "the nudge waits, visibly")
        await pa.press(*"/reconnect", "enter")
        await wait_until(pa, lambda: "Connected" in plain(bar), "back")
        await wait_until(pb, lambda: "alice just sent you a nudge!" in transcript_text(bob, DM),
                         "bob got it")
        await wait_until(pa, lambda: "You have just sent a nudge!"
                         in transcript_text(alice, DM), "alice's line")
        await pa.pause()
        assert "offline" not in transcript_text(alice, DM)
        assert transcript_text(bob, DM).count("just sent you a nudge") == 1
