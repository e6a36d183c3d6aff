"""Figures as text for people, the machine's description, and cfm-to-baseline ratios."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

# The figure each scenario is judged by: (key path, label, higher is better).
HEADLINE: dict[str, tuple[str, str, bool]] = {
    "fanout": ("deliveries_per_s", "deliveries/s", True),
    "rooms": ("deliveries_per_s", "deliveries/s", True),
    "latency": ("latency.p99_ms", "p99 ms", False),
    "idle": ("rss_per_connection", "server bytes/connection", False),
    "connect": ("connects_per_s", "connects/s", True),
    "replay": ("replay_msgs_per_s", "replayed msgs/s", True),
    "bigroom": ("join_frames", "frames sent for the joins", False),
}

LINES: list[tuple[str, str]] = [
    ("deliveries/s", "deliveries_per_s"),
    ("deliveries/server CPU-s", "deliveries_per_server_cpu_s"),
    ("says/s", "says_per_s"),
    ("msg frame bytes", "msg_frame_bytes"),
    ("latency p50 ms", "latency.p50_ms"),
    ("latency p99 ms", "latency.p99_ms"),
    ("latency p99.9 ms", "latency.p999_ms"),
    ("latency samples", "latency.samples"),
    ("scheduled latency p50 ms", "scheduled_latency.p50_ms"),
    ("scheduled latency p99 ms", "scheduled_latency.p99_ms"),
    ("send lateness p99 ms", "send_lateness.p99_ms"),
    ("kernel receipt p50 ms", "kernel_latency.p50_ms"),
    ("kernel receipt p99 ms", "kernel_latency.p99_ms"),
    ("kernel receipt p99.9 ms", "kernel_latency.p999_ms"),
    ("connected", "connected"),
    ("connects/s", "connects_per_s"),
    ("server CPU µs/connect", "server_cpu_us_per_connect"),
    ("connect p50 ms", "connect_latency.p50_ms"),
    ("connect p99 ms", "connect_latency.p99_ms"),
    ("server bytes/connection", "rss_per_connection"),
    ("driver bytes/connection", "driver_rss_per_connection"),
    ("fill says/s", "fill_says_per_s"),
    ("replayed", "received"),
    ("replay seconds", "replay_seconds"),
    ("replay msgs/s", "replay_msgs_per_s"),
    ("history pages", "history_pages"),
    ("quiet clients", "quiet"),
    ("join frames", "join_frames"),
    ("join frames / members²", "join_frames_per_member_squared"),
    ("join bytes", "join_bytes"),
    ("join seconds", "join_seconds"),
    ("join server CPU s", "join_server_cpu_seconds"),
    ("presence frames / change", "presence_frames_per_change"),
    ("presence server CPU s", "presence_server_cpu_seconds"),
    ("server CPU (cores)", "server_cpu"),
    ("server CPU seconds", "server_cpu_seconds"),
    ("server CPU wait (cores)", "server_cpu_wait"),
    ("server RSS MB", "server_rss"),
    ("driver CPU (max, cores)", "driver_cpu"),
    ("driver CPU wait (cores)", "driver_cpu_wait"),
    ("driver processes", "procs"),
    ("errors", "errors"),
]


def lookup(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _fmt(label: str, value: Any) -> str:
    if label.endswith("MB") and isinstance(value, int):
        return f"{value / 1e6:.1f}"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(result: dict[str, Any]) -> str:
    head = (f"{result['scenario']} on {result['target']} ({result['url']}); "
            f"load before {result.get('load_before')}, after {result.get('load_after')}")
    lines = [head]
    for label, path in LINES:
        value = lookup(result, path)
        if value is not None:
            lines.append(f"  {label:<26} {_fmt(label, value)}")
    for step in result.get("join_steps", ()):
        lines.append(f"    {step['members_after']:>6} members: {step['frames_per_join']:>9} "
                     f"frames/join, {step['bytes_per_join']:>9,} bytes/join, "
                     f"{step.get('server_cpu_seconds', '?')} server CPU s")
    if result.get("error_kinds"):
        lines.append(f"  error kinds: {result['error_kinds']}")
    if result.get("closed_early"):
        lines.append(f"  closed by the server: {result['closed_early']}")
    if result.get("server_cpus"):
        lines.append(f"  pinned: server on CPU {result['server_cpus']}, "
                     f"driver on CPU {result['driver_cpus']}")
    for key in ("server_cpu_by_process", "rss_per_connection_by_process"):
        if result.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {result[key]}")
    for warning in result.get("warnings", ()):
        lines.append(f"  WARNING: {warning}")
    return "\n".join(lines)


def ratios(results: list[dict[str, Any]], path: str | None = None,
           higher: bool = True) -> dict[str, float | None]:
    """Each target's headline figure (or ``path``'s) as a ratio to the baseline's, or
    without a baseline to the first target's (single node vs cluster), 1.0 = as fast."""
    baseline = next((r for r in results if r["target"] == "baseline"), None)
    if baseline is None:
        if len(results) < 2:
            return {}
        baseline = results[0]
    if path is None:
        path, _, higher = HEADLINE[baseline["scenario"]]
    base = lookup(baseline, path)
    out: dict[str, float | None] = {}
    for r in results:
        value = lookup(r, path)
        if not base or value is None:
            out[r["target"]] = None
        else:
            # Always "how much of the baseline's performance": below 1 is slower.
            out[r["target"]] = round(value / base if higher else base / value, 3) \
                if value else None
    return out


def render_comparison(results: list[dict[str, Any]]) -> str:
    scenario = results[0]["scenario"]
    path, label, _ = HEADLINE[scenario]
    rel = ratios(results)
    lines = [f"{scenario}: {label}"]
    for r in results:
        value = lookup(r, path)
        ratio = rel.get(r["target"])
        shown = f"{ratio:.2f} x {results[0]['target']}" if ratio is not None else ""
        lines.append(f"  {r['target']:<14} {_fmt(label, value):>14}  {shown}")
    if any(r["target"].startswith("cfm-cluster") for r in results) and \
            any(lookup(r, "deliveries_per_server_cpu_s") for r in results):
        # The cluster's goal: deliveries per CPU-second of every server process.
        per_cpu = ratios(results, "deliveries_per_server_cpu_s")
        lines.append(f"{scenario}: deliveries per server CPU-s (nodes + Redis)")
        for r in results:
            value = lookup(r, "deliveries_per_server_cpu_s")
            ratio = per_cpu.get(r["target"])
            shown = f"{ratio:.2f} x {results[0]['target']}" if ratio is not None else ""
            lines.append(f"  {r['target']:<14} {_fmt('x', value):>14}  {shown}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in ("websockets", "msgpack", "cfm"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        **versions,
    }
