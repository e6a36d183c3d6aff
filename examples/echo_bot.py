"""Echo: repeats your direct messages and nudges you back. python echo_bot.py [URL] [NAME]"""
import sys

from cfm_common.bot import Bot

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:1863/ws"
bot = Bot(url, sys.argv[2] if len(sys.argv) > 2 else "echo", display="Echo", psm="I repeat.")

@bot.on_message
async def echo(msg):
    if msg.room.startswith("dm:"):  # only direct messages, not every room it is in
        await bot.reply(msg, msg.text)

bot.on_nudge(bot.nudge_back)
bot.run()
