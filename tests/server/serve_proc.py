"""``cfm serve`` as a subprocess whose every output line a test can wait for.

    async with serve("--data-dir", str(d), "--tls-cert", ...) as server:
        server.url                                  # ws:// or wss://, once it listens
        server.proc.send_signal(signal.SIGHUP)
        await server.wait_line("SIGHUP: reloaded")  # bounded wait for a line
        server.text()                               # everything it printed so far

Unlike tests/faults/procs.py this one speaks ``wss://`` and keeps the log for reading.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

URL_RE = re.compile(r"listening on (wss?://[^\s,]+)")
START_TIMEOUT = 20.0


class ServeProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.url = ""
        self._new_line = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._new_line.set()
        self._new_line.set()

    def text(self) -> str:
        return "\n".join(self.lines)

    async def wait_line(self, pattern: str, timeout: float = 15.0, *,
                        start: int = 0) -> re.Match[str]:
        """The first line (from index ``start``) matching ``pattern``; AssertionError with
        the output if none comes within ``timeout`` or the process ends."""
        regex = re.compile(pattern)
        seen = start
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for line in self.lines[seen:]:
                        if match := regex.search(line):
                            return match
                    seen = len(self.lines)
                    if self._reader.done():
                        break
                    self._new_line.clear()
                    await self._new_line.wait()
        except TimeoutError:
            pass
        raise AssertionError(f"no line matching {pattern!r}; output:\n{self.text()[-3000:]}")

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
        code = await self.proc.wait()
        await asyncio.wait_for(self._reader, 10)
        return code


@asynccontextmanager
async def serve(*args: str, env: dict[str, str] | None = None, ai: bool = False,
                preexec_fn: Callable[[], None] | None = None,
                cwd: str | None = None, python: tuple[str, ...] = ()
                ) -> AsyncIterator[ServeProcess]:
    """A started ``cfm serve --port 0`` (AI contacts off unless ``ai``); stopped after.
    ``python``: options of the interpreter (``-P``)."""
    command = [sys.executable, *python, "-m", "cfm_server", "--host", "127.0.0.1",
               "--port", "0", *([] if ai else ["--no-ai"]), *args]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})}, preexec_fn=preexec_fn, cwd=cwd)
    server = ServeProcess(proc)
    try:
        server.url = (await server.wait_line(URL_RE.pattern, START_TIMEOUT)).group(1)
        yield server
    finally:
        await server.stop()
