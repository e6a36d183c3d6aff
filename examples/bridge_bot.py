"""Bridge: mirrors every message of one room into another, both ways.
python bridge_bot.py [URL] [NAME] [ROOM_A] [ROOM_B]

Each mirror's id comes from the message mirrored (``bot.say`` inside a handler), so a
mirror sent again after a crash lands once; one handler at a time keeps them in order.
"""

from __future__ import annotations

import sys

from cfm_common import Bot
from cfm_common.frames import Msg, Welcome


def make_bot(url: str, name: str = "bridge", rooms: tuple[str, str] = ("#left", "#right"),
             **options) -> Bot:
    bot = Bot(url, name, display="Bridge", psm=f"{rooms[0]} ⇄ {rooms[1]}", **options)
    other = {rooms[0]: rooms[1], rooms[1]: rooms[0]}

    @bot.on_ready
    async def join(welcome: Welcome) -> None:
        for room in rooms:
            await bot.client.join(room)  # a no-op when already a member

    @bot.on_message
    async def mirror(msg: Msg) -> None:
        target = other.get(msg.room)
        if target is not None:
            await bot.say(f"[{msg.sender}] {msg.text}", room=target)

    return bot


if __name__ == "__main__":
    args = sys.argv[1:]
    make_bot(args[0] if args else "ws://127.0.0.1:1863/ws",
             args[1] if len(args) > 1 else "bridge",
             (args[2], args[3]) if len(args) > 3 else ("#left", "#right")).run()
