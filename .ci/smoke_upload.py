"""One tus upload against a running server, with the standard library only (it runs in the
wheel's fresh venv, where nothing but the package and its dependencies is installed):
readiness, login, POST /files/, one PATCH that completes, the batch it made (its sha256 once it
is in durable storage, and its end in a worker process: random bytes are no ZIP, so it fails),
then the web page.

usage: python smoke_upload.py BASE_URL USERNAME PASSWORD PAGE_STATUS
"""

import base64
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TUS = {"Tus-Resumable": "1.0.0"}


def call(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def eventually(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            sys.exit(f"smoke: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.3)


def main(base: str, username: str, password: str, page_status: int) -> None:
    eventually("/readyz answering ready", lambda: call("GET", base + "/readyz")[0] == 200)
    status, _, body = call(
        "POST",
        base + "/api/auth/login",
        urllib.parse.urlencode({"username": username, "password": password}).encode(),
    )
    assert status == 200, (status, body)
    auth = {"Authorization": "Bearer " + json.loads(body)["access_token"]}

    data = os.urandom(3 * 2**20 + 17)
    meta = (
        "filename "
        + base64.b64encode(b"smoke.zip").decode()
        + ",upload_type "
        + base64.b64encode(b"zip_with_qr").decode()
    )
    status, headers, body = call(
        "POST",
        base + "/files/",
        b"",
        {**TUS, **auth, "Upload-Length": str(len(data)), "Upload-Metadata": meta},
    )
    assert status == 201, (status, body)
    url = urllib.parse.urljoin(base + "/files/", headers["Location"])
    status, headers, body = call(
        "PATCH",
        url,
        data,
        {**TUS, **auth, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert status == 204 and headers["Upload-Offset"] == str(len(data)), (status, dict(headers), body)
    batch_url = f"{base}/api/batches/{headers['Batch-Id']}"
    batch = eventually(
        "the batch's end in a worker",
        lambda: (
            (b := json.loads(call("GET", batch_url, None, auth)[2]))["status"] in ("completed", "failed")
            and b
        ),
    )
    assert batch["sha256"] == hashlib.sha256(data).hexdigest() and batch["status"] == "failed", batch
    status, _, body = call("GET", base + "/")
    assert status == page_status, (status, body[:200])
    print(
        f"smoke: uploaded {len(data)} bytes as batch {batch['batch_id']} (sha256 matches, a worker failed it: {batch['error']}); / answered {status}"
    )


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], int(sys.argv[4]))
