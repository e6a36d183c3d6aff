"""``cfm serve`` that sends itself a signal at one moment of its life, for the tests of
what a signal does then (tests/server/test_shutdown_signals.py):

    python serve_signalled.py MOMENT SIGNAL [cfm serve's arguments...]
    python serve_signalled.py MOMENT SIGNAL --run=MODULE|SCRIPT.py [its arguments...]

It runs the real ``cfm serve`` (or the module, ``cfm_cli.main bot ai …``, or the script, a
bot's ``Bot.run()``: tests/sdk/test_bot_signals.py) in this process; the signal is a real
one (``os.kill`` of its own pid), sent at a moment a test could not hit from outside without racing:

- ``log:LOGGER:TEXT``: as the first record of LOGGER whose message holds TEXT is logged
  (the code that logged it goes on until its next ``await``, as after any signal);
- ``listener``: as websockets logs "server listening on" (its listener just bound; the
  start-up steps after it still to come);
- ``returned``: once the command has returned: its event loop closed, its threads joined,
  the interpreter about to exit (then it prints ``signal-self: still alive``);
- ``atexit``: in the interpreter's exit handlers.

It prints ``signal-self: SIGNAL at MOMENT`` just before sending, so a test can tell the
signal was sent.
"""

from __future__ import annotations

import atexit
import logging
import os
import runpy
import signal
import sys

moment, signame = sys.argv[1], sys.argv[2]
sig = signal.Signals[signame]
target = "cfm_server"
if len(sys.argv) > 3 and sys.argv[3].startswith("--run="):
    target = sys.argv.pop(3).removeprefix("--run=")
sys.argv = [target if target.endswith(".py") else "cfm", *sys.argv[3:]]
sent: list[str] = []


def signal_self() -> None:
    if not sent:
        sent.append(moment)
        print(f"signal-self: {signame} at {moment}", flush=True)
        os.kill(os.getpid(), sig)


def on_record(logger: str, text: str) -> None:
    def check(record: logging.LogRecord) -> bool:
        if text in record.getMessage():
            signal_self()
        return True

    logging.getLogger(logger).addFilter(check)


def speak_once_the_hub_loaded(record: logging.LogRecord) -> bool:
    # cfm serve sets websockets' logger to WARNING as it sets up logging; the hub loads
    # after that and before the listener.
    logging.getLogger("cfm_server.websockets").setLevel(logging.INFO)
    return True


if moment.startswith("log:"):
    _, logger, text = moment.split(":", 2)
    on_record(logger, text)
elif moment == "listener":
    logging.getLogger("cfm_server.hub").addFilter(speak_once_the_hub_loaded)
    on_record("cfm_server.websockets", "server listening on")
elif moment == "atexit":
    atexit.register(signal_self)
elif moment != "returned":
    raise SystemExit(f"unknown moment {moment!r}")

try:
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__")
finally:
    if moment == "returned":
        signal_self()
        print("signal-self: still alive", flush=True)
