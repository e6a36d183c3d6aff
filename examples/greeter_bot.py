"""Greeter: welcomes everyone who joins its rooms, once, and says hello to whoever adds
it as a contact. python greeter_bot.py [URL] [NAME] [ROOM ...]

No state file: the greeting's id is derived from (room, user), and the server stores
one message per id, so a user greeted before a restart is not greeted again. Joins it
missed while it was away are caught up from the member list at every sign-in.
"""

from __future__ import annotations

import sys

from cfm_common import Bot
from cfm_common.frames import Contact, Member, Welcome


def make_bot(url: str, name: str = "greeter", rooms: tuple[str, ...] = ("#lobby",),
             **options) -> Bot:
    bot = Bot(url, name, display="Greeter", psm="Welcome!", **options)

    async def greet(room: str, user: str) -> None:
        if user != bot.name:
            await bot.say(f"Welcome to {room}, {user}!", room=room, key=f"greet:{room}:{user}")

    @bot.on_ready
    async def catch_up(welcome: Welcome) -> None:
        for room in rooms:
            joined = await bot.client.join(room)
            for member in joined.members:  # those who came while we were away, too
                await greet(room, member.name)

    @bot.on_member
    async def welcome(member: Member) -> None:
        if member.op == "join" and member.room in rooms:
            await greet(member.room, member.name)

    @bot.on_added_you
    async def hello(contact: Contact) -> None:
        await bot.client.contact("add", contact.name)
        await bot.say(f"Hi {contact.name}! I'm the greeter.", to=contact.name,
                      key=f"hello:{contact.name}")

    return bot


if __name__ == "__main__":
    args = sys.argv[1:]
    make_bot(args[0] if args else "ws://127.0.0.1:1863/ws",
             args[1] if len(args) > 1 else "greeter",
             tuple(args[2:]) or ("#lobby",)).run()
