"""Trivia: a quiz in any room or DM. python trivia_bot.py [URL] [NAME] [STATE_FILE]

    !question    asks a question          !answer 6    answers it
    !score       your points              !help        the commands

A bot handles each message at least once (a crash mid-handler runs it again), so every
change of state is keyed by the message that caused it: a point is counted once per
answer, however often its handler runs.
"""

from __future__ import annotations

import sys

from cfm_common import Bot
from cfm_common.frames import Msg

try:
    from examples._state import JsonState
except ImportError:  # run as a script from examples/
    from _state import JsonState

QUESTIONS = [
    ("How many sides has a hexagon?", "6"),
    ("What is the chemical symbol of gold?", "au"),
    ("In which year did MSN Messenger first come out?", "1999"),
    ("How many bits are in a byte?", "8"),
]


def make_bot(url: str, name: str = "trivia", state_file: str | None = None, **options) -> Bot:
    bot = Bot(url, name, display="Trivia", psm="!question to play", **options)
    state = JsonState(state_file, {"asked": {}, "points": {}, "counted": []})

    @bot.command("question")
    async def question(msg: Msg, args: list[str]) -> None:
        """ask me a question"""
        number = msg.seq % len(QUESTIONS)  # from the message: the same if handled again
        state.data["asked"][msg.room] = number
        state.save()
        await bot.reply(msg, f"Question: {QUESTIONS[number][0]} (!answer …)")

    @bot.command("answer")
    async def answer(msg: Msg, args: list[str]) -> None:
        """answer the question"""
        number = state.data["asked"].get(msg.room)
        if number is None:
            await bot.reply(msg, "Ask me for a !question first.")
            return
        if " ".join(args).strip().lower() != QUESTIONS[number][1]:
            await bot.reply(msg, f"Not quite, {msg.sender}. Try again!")
            return
        key = f"{msg.room}:{msg.seq}"
        if key not in state.data["counted"]:  # counted once, whatever happens next
            state.data["counted"].append(key)
            state.data["points"][msg.sender] = state.data["points"].get(msg.sender, 0) + 1
            state.save()
        await bot.reply(msg, f"Correct, {msg.sender}!")

    @bot.command("score")
    async def score(msg: Msg, args: list[str]) -> None:
        """your points"""
        points = state.data["points"].get(msg.sender, 0)
        await bot.reply(msg, f"{msg.sender}: {points} point{'s' * (points != 1)}")

    return bot


if __name__ == "__main__":
    make_bot(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:1863/ws",
             sys.argv[2] if len(sys.argv) > 2 else "trivia",
             sys.argv[3] if len(sys.argv) > 3 else "trivia.json").run()
