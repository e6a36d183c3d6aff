"""Thread: answers the replies to its own messages. python thread_bot.py [URL] [NAME] [ROOM ...]

Mention it (``@thread``) in one of its rooms and it answers as a reply to you; reply to
one of its messages and it answers that reply, quoting it. Replies to other people's
messages, reactions and edits are not its business (reactions and edits never reach
``on_message``). No state file: each answer's id is derived from the message answered,
so a restart in the middle answers nothing twice.
"""

from __future__ import annotations

import sys

from cfm_common import Bot
from cfm_common.frames import Msg, Welcome


def make_bot(url: str, name: str = "thread", rooms: tuple[str, ...] = ("#lobby",),
             **options) -> Bot:
    bot = Bot(url, name, display="Thread", psm="Reply to my messages", **options)

    @bot.on_ready
    async def join(welcome: Welcome) -> None:
        for room in rooms:
            await bot.client.join(room)  # a no-op when already a member

    @bot.on_message
    async def answer(msg: Msg) -> None:
        if bot.name in (msg.mentions or ()):
            await bot.reply(msg, f"Hi {msg.sender}! Reply to this and I'll answer.", quote=True)
            return
        answered = await bot.target_of(msg)  # the message msg replies to, as it is now
        if answered is None or answered.sender != bot.name or answered.deleted:
            return  # not a reply, or a reply to someone else
        await bot.reply(msg, f"{msg.sender}, you answered “{answered.text}” with "
                             f"“{msg.text}”", quote=True)

    return bot


if __name__ == "__main__":
    args = sys.argv[1:]
    make_bot(args[0] if args else "ws://127.0.0.1:1863/ws",
             args[1] if len(args) > 1 else "thread",
             tuple(args[2:]) or ("#lobby",)).run()
