"""``cfm serve`` as a real subprocess that a test can kill, restart and inspect.

    proc = ServerProcess(data_dir, "--no-rate-limits")
    await proc.start()            # port 0 the first time, then the same port again
    proc.url                      # ws://127.0.0.1:<port>/ws
    proc.kill()                   # SIGKILL: no shutdown at all
    await proc.wait()
    await proc.start()            # the same data dir and port: clients reconnect to it
    await proc.stop()             # SIGTERM, then SIGKILL if it hangs

The server runs in its own process so a kill is a real kill: nothing in the test's
event loop survives with it, and whatever it acknowledged must be on disk.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from tests.ports import free_port

URL_RE = re.compile(rb"listening on (ws://\S+)")
START_TIMEOUT = 20.0


class ServerExited(AssertionError):
    """The server process ended before it listened; ``output`` holds what it printed."""

    def __init__(self, returncode: int | None, output: str) -> None:
        super().__init__(f"cfm serve exited with {returncode}: {output.strip()[-500:]}")
        self.returncode = returncode
        self.output = output


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.args = args
        self.env = env or {}
        self.port = free_port()  # kept across restarts; see tests/ports.py
        self.url = ""
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._drain: asyncio.Task[None] | None = None
        self.output: list[str] = []

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "cfm_server", "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--no-ai", "--log-level", "warning", *self.args,
        ]

    async def start(self, *, preexec_fn: object = None) -> str:
        """Start (or restart) the server; its ``ws://`` URL once it listens."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        proc = await asyncio.create_subprocess_exec(
            *self.command(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **self.env},
            preexec_fn=preexec_fn,  # type: ignore[arg-type]
        )
        self.proc = proc
        assert proc.stdout is not None
        lines: list[bytes] = []
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        await proc.wait()
                        raise ServerExited(proc.returncode, b"".join(lines).decode())
                    lines.append(line)
                    if match := URL_RE.search(line):
                        self.url = match.group(1).decode()
                        break
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        self.starts += 1
        # Keep reading its output so a chatty server never blocks on a full pipe.
        self._drain = asyncio.create_task(self._read_rest(proc))
        return self.url

    async def _read_rest(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self.output.append(line.decode(errors="replace"))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._drain is not None:
            await asyncio.wait_for(self._drain, timeout)
            self._drain = None
        return code

    async def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not end in time. Its exit code."""
        if not self.running:
            return await self.wait()
        self.terminate()
        try:
            return await self.wait(10)
        except TimeoutError:
            self.kill()
            return await self.wait()


async def run_to_exit(data_dir: Path, *args: str, timeout: float = 20.0,
                      preexec_fn: object = None) -> tuple[int, str]:
    """Run ``cfm serve`` expecting it to refuse to start: (exit code, its output).

    If it starts listening after all, it is killed and the code is -9.
    """
    server = ServerProcess(data_dir, *args)
    try:
        await server.start(preexec_fn=preexec_fn)
    except ServerExited as exc:
        return exc.returncode if exc.returncode is not None else -1, exc.output
    server.kill()
    await server.wait(timeout)
    return -9, "".join(server.output)
