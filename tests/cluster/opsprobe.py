"""What an operator reads of a node: its ``/metrics`` samples and its log lines."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

WAIT = 30.0  # a bound on every wait (a busy 2-core machine), never a timed assertion

# A cluster module's warning line as `cfm serve` prints it.
CLUSTER_WARNING = re.compile(r" WARNING cfm_server\.cluster\.")


def http_of(ws_url: str) -> str:
    """``ws://host:port/ws`` → ``http://host:port``."""
    return "http" + ws_url.removeprefix("ws").removesuffix("/ws")


async def scrape(base: str) -> dict[str, float]:
    """Every sample of the node's ``/metrics``: ``name`` or ``name{k="v",…}`` → value."""
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.get(base + "/metrics")
    reply.raise_for_status()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def until_scraped(base: str, test: Callable[[dict[str, float]], bool], what: str,
                        timeout: float = WAIT) -> dict[str, float]:
    """Scrape until ``test`` holds (bounded): the samples that made it hold."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        samples = await scrape(base)
        if test(samples):
            return samples
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last scrape: "
                                 f"{ {k: v for k, v in samples.items() if 'cluster' in k} }")
        await asyncio.sleep(0.1)
