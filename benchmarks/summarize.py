"""Turn ``cfm bench --compare --json`` outputs into the Markdown rows of docs/performance.md.

    cfm bench --compare --scenario fanout --json > fanout.json
    python benchmarks/summarize.py fanout.json rooms.json ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cfm_bench.report import HEADLINE, lookup, ratios

# Extra columns per scenario: (header, key path, format).
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "fanout": [("deliveries/s", "deliveries_per_s", "{:,.0f}"),
               ("per server CPU-s", "deliveries_per_server_cpu_s", "{:,.0f}"),
               ("p50 / p99 ms", "latency", "lat")],
    "rooms": [("deliveries/s", "deliveries_per_s", "{:,.0f}"),
              ("per server CPU-s", "deliveries_per_server_cpu_s", "{:,.0f}"),
              ("p50 / p99 ms", "latency", "lat")],
    "latency": [("deliveries/s", "deliveries_per_s", "{:,.0f}"),
                ("p50 / p99 / p99.9 ms", "latency", "lat3"),
                ("scheduled p50 / p99 ms", "scheduled_latency", "lat"),
                ("per server CPU-s", "deliveries_per_server_cpu_s", "{:,.0f}")],
    "idle": [("server bytes/conn", "rss_per_connection", "{:,.0f}"),
             ("server RSS MB", "server_rss", "mb")],
    "connect": [("connects/s", "connects_per_s", "{:,.0f}"),
                ("server CPU µs/connect", "server_cpu_us_per_connect", "{:,.0f}"),
                ("p50 / p99 ms", "connect_latency", "lat")],
    "replay": [("replay s", "replay_seconds", "{:.3f}"),
               ("msgs/s", "replay_msgs_per_s", "{:,.0f}"),
               ("server CPU s", "server_cpu_seconds", "{:.3f}"),
               ("fill says/s", "fill_says_per_s", "{:,.0f}")],
    "bigroom": [("join frames", "join_frames", "{:,.0f}"),
                ("join MB", "join_bytes", "mb"),
                ("join server CPU s", "join_server_cpu_seconds", "{:.1f}"),
                ("presence frames/change", "presence_frames_per_change", "{:,.0f}"),
                ("presence server CPU s", "presence_server_cpu_seconds", "{:.2f}")],
}


def _cell(result: dict[str, Any], path: str, fmt: str) -> str:
    value = lookup(result, path)
    if value is None:
        return "–"
    if fmt == "lat":
        return f"{value['p50_ms']:.1f} / {value['p99_ms']:.1f}"
    if fmt == "lat3":
        return f"{value['p50_ms']:.1f} / {value['p99_ms']:.1f} / {value['p999_ms']:.1f}"
    if fmt == "mb":
        return f"{value / 1e6:,.0f}"
    return fmt.format(value)


def rows(payload: dict[str, Any]) -> list[str]:
    results = payload.get("results") or [payload]
    scenario = results[0]["scenario"]
    columns = COLUMNS[scenario]
    rel = ratios(results)
    header = ["target", *(c[0] for c in columns), f"x baseline ({HEADLINE[scenario][1]})",
              "server CPU wait", "load (1 min)"]
    out = [f"**{scenario}**", "", "| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
    for r in results:
        wait = r.get("server_cpu_wait")
        ratio = rel.get(r["target"])
        cells = [r["target"], *(_cell(r, path, fmt) for _, path, fmt in columns),
                 f"{ratio:.2f}" if ratio is not None else "–",
                 f"{wait:.2f}" if wait is not None else "–",
                 f"{r['load_before'][0]:.2f}" if r.get("load_before") else "–"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(paths: list[str]) -> None:
    for path in paths:
        print("\n".join(rows(json.loads(Path(path).read_text()))))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
