"""Remind me: "!remind 10m tea is ready" → in ten minutes, "⏰ tea is ready".
python remind_bot.py [URL] [NAME] [STATE_FILE]

Reminders live in a JSON file, so they survive a restart. Each reminder is keyed by the
message that asked for it, and its ⏰ is posted with ``bot.say(..., key=...)``: a
reminder sent just before a crash and sent again after it lands once.
"""

from __future__ import annotations

import re
import sys

from cfm_common import Bot
from cfm_common.frames import Msg

try:
    from examples._state import JsonState
except ImportError:  # run as a script from examples/
    from _state import JsonState

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DELAY = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def make_bot(url: str, name: str = "remindme", state_file: str | None = None,
             tick: float = 1.0, **options) -> Bot:
    bot = Bot(url, name, display="Remind me", psm="!remind 10m tea", **options)
    state = JsonState(state_file, {"due": {}})  # key → [due ms, room, text]

    @bot.command("remind")
    async def remind(msg: Msg, args: list[str]) -> None:
        """!remind 10m what — remind you in 10 minutes (s, m, h, d)"""
        match = DELAY.match(args[0]) if args else None
        if match is None or len(args) < 2:
            await bot.reply(msg, "Say it like this: !remind 10m tea is ready")
            return
        seconds = float(match.group(1)) * UNITS[match.group(2)]
        # The server's time of the request, not ours: the same if handled again.
        due_ms = msg.ts + int(seconds * 1000)
        state.data["due"][f"{msg.room}:{msg.seq}"] = [due_ms, msg.room, " ".join(args[1:])]
        state.save()
        await bot.reply(msg, f"OK, I'll remind you in {args[0]}.")

    @bot.every(tick)
    async def send_due() -> None:
        import time

        now_ms = int(time.time() * 1000)
        for key, (due_ms, room, text) in sorted(state.data["due"].items(),
                                                key=lambda item: item[1][0]):
            if due_ms <= now_ms:
                await bot.say(f"⏰ {text}", room=room, key=f"remind:{key}")
                del state.data["due"][key]
                state.save()

    return bot


if __name__ == "__main__":
    make_bot(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:1863/ws",
             sys.argv[2] if len(sys.argv) > 2 else "remindme",
             sys.argv[3] if len(sys.argv) > 3 else "reminders.json").run()
