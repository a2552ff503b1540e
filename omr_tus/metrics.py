"""Counters for GET /metrics, in Prometheus' text format.

What one process sees (requests, bytes received, upload events, lock waits) is counted here;
what spans every worker and node (active uploads, sheets, batch durations) is read from the
database when the metrics are scraped, so any node gives the same cluster-wide figures.
"""

from __future__ import annotations

from collections import defaultdict

PREFIX = "omr_tus_"
HELP = {
    "http_requests_total": ("counter", "HTTP requests answered, by route and status"),
    "received_bytes_total": ("counter", "Upload bytes written to the store (tus and legacy chunks)"),
    "uploads_total": ("counter", "Upload events: created, finished, terminated, expired"),
    "lock_waits_total": ("counter", "Upload lock acquisitions that had to wait for another request"),
    "db_round_trips_total": (
        "counter",
        "Round trips to the database by kind: statement, begin, commit, "
        "rollback, and lock (advisory locks across nodes)",
    ),
    "requests_in_flight": ("gauge", "Requests being handled by this process"),
    "active_uploads": ("gauge", "Incomplete uploads (all nodes)"),
    "sheets": ("gauge", "Sheets by status (all workers)"),
    "batches": ("gauge", "Batches by status (all workers)"),
    "batch_duration_seconds": ("summary", "From upload completion to the last sheet read, completed batches"),
}

Labels = tuple[tuple[str, str], ...]


class Counters:
    def __init__(self) -> None:
        self._values: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self.in_flight = 0  # requests being handled now (graceful shutdown waits for none)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self._values[name][tuple(sorted(labels.items()))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def samples(self) -> dict[str, dict[Labels, float]]:
        return {name: dict(values) for name, values in self._values.items()}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(samples: dict[str, dict[Labels, float]]) -> str:
    """The text exposition: HELP and TYPE once per metric, then its samples (a summary's
    samples are its `_sum` and `_count`)."""
    lines = []
    for base, (kind, text) in HELP.items():
        names = [n for n in (base, base + "_sum", base + "_count") if n in samples]
        if not names:
            continue
        lines += [f"# HELP {PREFIX}{base} {text}", f"# TYPE {PREFIX}{base} {kind}"]
        for name in names:
            for labels, value in sorted(samples[name].items()):
                tags = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{PREFIX}{name}{{{tags}}} {value:g}" if tags else f"{PREFIX}{name} {value:g}")
    return "\n".join(lines) + "\n"
