"""GET /metrics: Prometheus text that counts what happened, for admins only."""

from __future__ import annotations

import re

from omr_tus.http.keys import SERVICE

SAMPLE = re.compile(r'^omr_tus_[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+]+$')


async def scrape(api) -> dict[str, float]:
    resp = await api.client.get("/metrics", headers=api.auth("root"))
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = {}
    for line in (await resp.text()).splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) omr_tus_[a-z_]+ ", line), line
            continue
        assert SAMPLE.match(line), line
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


async def test_metrics_count_uploads_bytes_and_requests(api):
    before = await scrape(api)
    path = await api.create(1000)
    assert (await api.patch(path, 0, b"x" * 1000)).status == 204
    doomed = await api.create(10)
    assert (await api.client.delete(doomed, headers=api.tus())).status == 204
    await api.client.get("/api/batches/nope", headers=api.auth())
    after = await scrape(api)

    def grew(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert grew('omr_tus_uploads_total{event="created"}') == 2
    assert grew('omr_tus_uploads_total{event="finished"}') == 1
    assert grew('omr_tus_uploads_total{event="terminated"}') == 1
    assert grew("omr_tus_received_bytes_total") == 1000
    assert grew('omr_tus_http_requests_total{method="PATCH",route="/files/{upload_id}",status="204"}') == 1
    assert grew('omr_tus_http_requests_total{method="GET",route="/api/batches/{batch_id}",status="404"}') == 1
    assert after["omr_tus_active_uploads"] == before.get("omr_tus_active_uploads", 0)
    assert (
        after.get('omr_tus_batches{status="uploaded"}', 0)
        + after.get('omr_tus_batches{status="processing"}', 0)
        + after.get('omr_tus_batches{status="completed"}', 0)
        >= 1
    )
    assert "omr_tus_lock_waits_total" in after and "omr_tus_batch_duration_seconds_count" in after
    assert grew('omr_tus_db_round_trips_total{kind="statement"}') >= 4  # 2 creations, a PATCH, a DELETE
    assert grew('omr_tus_db_round_trips_total{kind="commit"}') >= 2  # the creations (others autocommit)
    if api.client.app[SERVICE].lock_figures()[1] is None:  # SQLite: one node, locks in the process
        assert 'omr_tus_db_round_trips_total{kind="lock"}' not in after
    else:  # PostgreSQL: the PATCH and the DELETE each took and released an advisory lock
        assert grew('omr_tus_db_round_trips_total{kind="lock"}') >= 4


async def test_metrics_are_for_admins(api):
    assert (await api.client.get("/metrics")).status == 401
    resp = await api.client.get("/metrics", headers=api.auth())
    assert resp.status == 403 and "admin" in (await resp.json())["detail"]
