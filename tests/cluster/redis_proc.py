"""A real ``redis-server`` as a subprocess that a test can SIGKILL and restart on its dir.

    redis = RedisProcess(tmp_path / "redis")
    await redis.start()       # a free loopback port the first time, the same one after
    redis.url                 # redis://127.0.0.1:<port>/0
    redis.kill()              # SIGKILL: whatever it acknowledged must be in its AOF
    await redis.start()       # the same dir and port: it loads the AOF
    await redis.stop()

It runs with ``appendonly yes`` and ``appendfsync always``, the settings cluster mode
documents for "an acknowledged message survives a crash".
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.ports import free_port

START_TIMEOUT = 15.0
BINARY = shutil.which("redis-server")
MISSING = ("redis-server is not installed (Debian: apt-get install redis-server; "
           "./run-tests installs it when it may)")


class RedisProcess:
    def __init__(self, directory: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.dir = Path(directory)
        self.extra_args = extra_args  # e.g. a Redis Cluster node's (test_redis_cluster.py)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        assert BINARY is not None, MISSING
        if not self.port:
            self.port = free_port()
        self.proc = subprocess.Popen(
            [BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "no", "--daemonize", "no", "--logfile", "redis.log",
             "--maxmemory-policy", "noeviction", *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not await self._answers_ping():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}: "
                                     f"{self.log()[-500:]}")
            if loop.time() > deadline:
                raise AssertionError(f"redis-server did not answer in {START_TIMEOUT} s")
            await asyncio.sleep(0.02)

    async def _answers_ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return (await asyncio.wait_for(reader.readline(), 2)) == b"+PONG\r\n"
        except (OSError, TimeoutError):
            return False  # loading its AOF answers -LOADING: not ready yet
        finally:
            writer.close()

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 10)
        except TimeoutError:
            self.kill()

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""
