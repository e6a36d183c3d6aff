"""``cfm serve`` processes of the start-up tests: one expected to refuse to start, or one
whose output is read while it waits for something.

    code, output = await refused("--redis", url, "--node-id", "n1")  # it must exit
    async with started("--redis", url) as node: ...                  # serve_proc's, as is
    node = await spawn("--redis", url)   # a ServeProcess not yet listening; node.stop()
"""

from __future__ import annotations

import asyncio
import os
import sys

from tests.server.serve_proc import ServeProcess, serve

EXIT_WAIT = 30.0  # a refusal comes within a beat of the holder, or at once

started = serve


async def spawn(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
    """``cfm serve --port 0 --no-ai`` with ``args``; its output read as it comes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cfm_server", "--host", "127.0.0.1", "--port", "0", "--no-ai",
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})})
    return ServeProcess(proc)


async def refused(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``cfm serve`` with ``args`` and wait for it to exit by itself: its exit status
    and output. AssertionError (the process stopped) if it is still running after
    ``EXIT_WAIT`` seconds: it started instead of refusing."""
    node = await spawn(*args, env=env)
    try:
        await asyncio.wait_for(node.proc.wait(), EXIT_WAIT)
    except TimeoutError:
        await node.stop()
        raise AssertionError(
            f"cfm serve did not refuse to start:\n{node.text()[-3000:]}") from None
    await node.stop()  # (reads the rest of its output)
    return node.proc.returncode or 0, node.text()


def one_line_error(output: str) -> str:
    """The ``cfm serve:`` error line of a refused start, checked to be the only one and
    to come with no traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("cfm serve: ")]
    assert len(lines) == 1, output
    return lines[0]
