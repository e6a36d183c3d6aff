"""A bot for the kill tests: answers each message with "working on …", works 3 s, then
answers "done with …". python slow_bot.py URL [SEEN_FILE]"""

import asyncio
import sys

from cfm_common.bot import Bot

bot = Bot(sys.argv[1], "slowbot", seen_file=sys.argv[2] if len(sys.argv) > 2 else None)


@bot.on_message
async def work(msg):
    await bot.reply(msg, f"working on {msg.text}")
    print("started", msg.text, flush=True)
    await asyncio.sleep(3)
    await bot.reply(msg, f"done with {msg.text}")


bot.run()
