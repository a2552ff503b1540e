"""Batches as a person reads them: a table for the list, aligned fields for one batch."""

from __future__ import annotations

from collections.abc import Sequence

MB = 1000 * 1000
LIST_COLUMNS = ("BATCH", "STATUS", "TYPE", "TASK", "SHEETS", "FAILED", "SIZE", "CREATED", "FILENAME")
SHOW_FIELDS = (
    "batch_id",
    "filename",
    "size",
    "sha256",
    "upload_type",
    "task_id",
    "status",
    "total_sheets",
    "processed_sheets",
    "failed_sheets",
    "upload_id",
    "created_at",
    "updated_at",
    "completed_at",
    "file_deleted_at",
    "error",
)


def size(value: int | None) -> str:
    return "-" if value is None else f"{value / MB:,.1f} MB"


def cell(value) -> str:
    return "-" if value is None or value == "" else str(value)


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)


def when(iso: str | None) -> str:
    """To the second, for reading by eye; `batches show` has the full timestamp."""
    return iso[:19].replace("T", " ") if iso else "-"


def list_row(b: dict) -> tuple[str, ...]:
    return (
        b["batch_id"],
        b["status"],
        b["upload_type"],
        cell(b["task_id"]),
        f"{b['processed_sheets'] + b['failed_sheets']}/{b['total_sheets']}",
        str(b["failed_sheets"]),
        size(b["size"]),
        when(b["created_at"]),
        cell(b["filename"]),
    )


def batch_list(batches: list[dict]) -> str:
    return table([LIST_COLUMNS] + [list_row(b) for b in batches])


def detail(name: str, value) -> str:
    if name == "size" and value is not None:
        return f"{size(value)} ({value} bytes)"
    return cell(value)


def batch_details(batch: dict) -> str:
    rows = [(f"{name}:", detail(name, batch[name])) for name in SHOW_FIELDS if name in batch]
    text = table(rows)
    for entry in batch.get("skipped") or []:
        text += f"\nskipped: {entry.get('entry')}: {entry.get('reason')}"
    return text
