"""GET /api/batches (owner isolation, filters, pagination), /api/batches/{id}, .../progress."""

import hashlib

import pytest


async def complete(api, data: bytes, user="alice", **meta) -> tuple[str, str]:
    path = await api.create(len(data), {"filename": "f.zip", **meta}, user=user)
    resp = await api.patch(path, 0, data, user=user)
    assert resp.status == 204
    return path.rsplit("/", 1)[1], resp.headers["Batch-Id"]


async def test_batch_fields_and_progress(api):
    await api.register_task("11600111")
    upload_id, batch_id = await complete(api, b"abcdef", upload_type="zip_no_qr", task_id="11600111")
    batch = await api.batch(batch_id)
    assert batch == {
        **batch,
        "batch_id": batch_id,
        "upload_id": upload_id,
        "filename": "f.zip",
        "size": 6,
        "sha256": hashlib.sha256(b"abcdef").hexdigest(),
        "upload_type": "zip_no_qr",
        "task_id": "11600111",
        "status": "uploaded",
        "total_sheets": 0,
    }
    assert batch["created_at"].endswith("+00:00")
    progress = await api.get_json(f"/api/batches/{batch_id}/progress")
    assert progress == {
        "batch_id": batch_id,
        "status": "uploaded",
        "total_sheets": 0,
        "processed_sheets": 0,
        "failed_sheets": 0,
        "progress_percentage": 0.0,
    }


async def test_owner_isolation_and_admin(api):
    _, mine = await complete(api, b"a")
    _, theirs = await complete(api, b"b", user="bob")
    alice = await api.get_json("/api/batches")
    assert [b["batch_id"] for b in alice["batches"]] == [mine]
    await api.get_json(f"/api/batches/{theirs}", status=404)
    await api.get_json(f"/api/batches/{theirs}/progress", status=404)
    admin = await api.get_json("/api/batches", user="root")
    assert {b["batch_id"] for b in admin["batches"]} == {mine, theirs}
    assert admin["total"] == 2


async def test_filters_and_pagination(api):
    await api.register_task("11600111", "22200222")
    ids = {}
    for i, (kind, task) in enumerate(
        [("zip_with_qr", None), ("zip_no_qr", "11600111"), ("images", "22200222")]
    ):
        meta = {"upload_type": kind, **({"task_id": task} if task else {})}
        ids[kind] = await complete(api, bytes([i]) * 3, **meta)
    by_type = await api.get_json("/api/batches?upload_type=images")
    assert [b["batch_id"] for b in by_type["batches"]] == [ids["images"][1]]
    by_task = await api.get_json("/api/batches?task_id=11600111")
    assert [b["batch_id"] for b in by_task["batches"]] == [ids["zip_no_qr"][1]]
    by_upload = await api.get_json(f"/api/batches?upload_id={ids['zip_with_qr'][0]}")
    assert [b["batch_id"] for b in by_upload["batches"]] == [ids["zip_with_qr"][1]]
    assert (await api.get_json("/api/batches?status=completed"))["total"] == 0
    page1 = await api.get_json("/api/batches?limit=2&offset=0")
    page2 = await api.get_json("/api/batches?limit=2&offset=2")
    assert page1["total"] == 3 and len(page1["batches"]) == 2 and len(page2["batches"]) == 1
    assert {b["batch_id"] for b in page1["batches"] + page2["batches"]} == {v[1] for v in ids.values()}


@pytest.mark.parametrize(
    "query,detail",
    [
        ("status=done", "status must be one of"),
        ("upload_type=pdf", "upload_type must be one of"),
        ("limit=0", "limit must be between 1 and 500"),
        ("limit=abc", "limit must be an integer"),
        ("offset=-5", "offset must be between"),
        ("task_id=1%002", "NUL character"),
    ],
)
async def test_bad_query_is_400_with_detail(api, query, detail):
    body = await api.get_json(f"/api/batches?{query}", status=400)
    assert detail in body["detail"]


async def test_unknown_batch(api):
    body = await api.get_json("/api/batches/00000000-0000-0000-0000-000000000000", status=404)
    assert "not found" in body["detail"]
