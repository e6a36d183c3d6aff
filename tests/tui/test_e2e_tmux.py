"""The real `cfm chat` in a real terminal (tmux) against a real `cfm serve` subprocess."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cfm_common.client import Client
from cfm_common.frames import Msg
from tests.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

VENV_BIN = Path(sys.executable).parent
CFM = VENV_BIN / "cfm"
WAIT_S = 20.0


async def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "cfm serve exited early"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise AssertionError("cfm serve did not start listening")


class Tmux:
    """One private tmux server (its own socket), so nothing else is touched."""

    def __init__(self, socket_name: str) -> None:
        self.base = ["tmux", "-L", socket_name]

    def run(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], check=True, capture_output=True,
                              text=True, timeout=10).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "chat")

    async def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            await asyncio.sleep(0.2)
        size = self.run("display-message", "-p", "-t", "chat",
                        "#{window_width}x#{window_height} pane #{pane_width}x#{pane_height}")
        raise AssertionError(f"{text!r} never appeared on screen ({size.strip()}):\n"
                             f"{self.screen()}")

    def resize_in_steps(self, width: int, height: int, steps: int = 6) -> None:
        size = self.run("display-message", "-p", "-t", "chat",
                        "#{window_width} #{window_height}").split()
        w0, h0 = int(size[0]), int(size[1])
        for step in range(1, steps + 1):
            w = w0 + (width - w0) * step // steps
            h = h0 + (height - h0) * step // steps
            self.run("resize-window", "-t", "chat", "-x", str(w), "-y", str(h))

    async def wait_for_size(self, width: int, height: int) -> None:
        deadline = time.monotonic() + WAIT_S
        want = f"{width}x{height}"
        while self.run("display-message", "-p", "-t", "chat",
                       "#{window_width}x#{window_height}").strip() != want:
            if time.monotonic() > deadline:
                raise AssertionError(f"the window never became {want}")
            await asyncio.sleep(0.1)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "chat", *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "chat", "-l", text)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "st"),
            "XDG_CACHE_HOME": str(tmp_path / "cache")}


async def test_cfm_chat_in_tmux(tmp_path, env):
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    serve = subprocess.Popen(
        [str(CFM), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(tmp_path / "srv"), "--no-ai"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tmux = Tmux(f"cfm-test-{os.getpid()}-{port}")
    bob = Client(url, "bob", token_file=False)
    try:
        await wait_for_port(port, serve)
        await bob.connect()
        command = " ".join(shlex.quote(part) for part in
                           ["env", *(f"{k}={env[k]}" for k in env if k.startswith("XDG_")),
                            str(CFM), "chat", "--server", url, "--name", "alice"])
        tmux.run("new-session", "-d", "-s", "chat", "-x", "120", "-y", "40", command)
        await tmux.wait_for("Connected")
        screen = tmux.screen()
        assert "alice" in screen and "Online (0)" in screen

        # Add bob with F5, open the conversation from the list, say something.
        tmux.keys("F5")
        await tmux.wait_for("Add a contact")
        tmux.type("bob")
        tmux.keys("Enter")
        await tmux.wait_for("Online (1)")
        tmux.keys("Down", "Enter")
        await tmux.wait_for("To: ")
        tmux.type("hello bob :)")
        tmux.keys("Enter")

        async def next_msg() -> Msg:
            """The next message alice sent (bob's client hands bob's own back too)."""
            async for event in bob:
                if isinstance(event, Msg) and event.sender == "alice":
                    return event
            raise AssertionError("bob's client ended")

        msg = await asyncio.wait_for(next_msg(), WAIT_S)
        assert (msg.sender, msg.text) == ("alice", "hello bob :)")

        # A burst with no pause between keys (a paste tool, a macro, key bounce): each
        # message goes out exactly once, in order, and "x" Enter Enter is one "x".
        burst = [f"burst A{n}" for n in range(1, 6)]
        tmux.keys(*(key for text in burst for key in (text, "Enter")), "x", "Enter", "Enter")
        await tmux.wait_for("burst A5")
        tmux.type("end of burst")  # a barrier: whatever came before it has arrived
        tmux.keys("Enter")
        got: list[str] = []
        while not got or got[-1] != "end of burst":
            got.append((await asyncio.wait_for(next_msg(), WAIT_S)).text)
        assert got == [*burst, "x", "end of burst"]

        # Ctrl+U clears the draft before the keys after it in the same burst are typed:
        # "abc", then Ctrl+U "xyz" Enter at once sends "xyz", not "abcxyz".
        tmux.type("abc")
        await tmux.wait_for("abc")
        tmux.keys("C-u", "xyz", "Enter")
        assert (await asyncio.wait_for(next_msg(), WAIT_S)).text == "xyz"
        await bob.say("hi alice (Y) [bold]x[/]", to="alice")
        screen = await tmux.wait_for("hi alice 👍")
        assert "alice says" in screen and "hello bob 🙂" in screen
        assert "bob says" in screen and "[bold]x[/]" in screen

        # A transcript at its bottom stays there through resizes: what bob says next is
        # on screen at every size.
        for i in range(1, 41):
            await bob.say(f"filler {i}", to="alice")
        await tmux.wait_for("filler 40")
        for width, height in ((100, 32), (60, 20), (200, 50), (100, 32), (80, 24)):
            # As a window dragged to its new size: many sizes in a row, no pause.
            tmux.resize_in_steps(width, height)
            await tmux.wait_for_size(width, height)
            await bob.say(f"at {width}x{height}", to="alice")
            await tmux.wait_for(f"at {width}x{height}")

        # Alt+1 under tmux (it sends ESC 1) switches tabs, and types nothing.
        tmux.type("/join #lobby")
        tmux.keys("Enter")
        await tmux.wait_for("#lobby  1 member")
        tmux.keys("M-1")
        tmux.type("back in tab 1")
        tmux.keys("Enter")
        assert (await asyncio.wait_for(next_msg(), WAIT_S)).text == "back in tab 1"
        tmux.keys("C-q")
    finally:
        await bob.close()
        subprocess.run([*tmux.base, "kill-server"], capture_output=True, timeout=10)
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=10)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
