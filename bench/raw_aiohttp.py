"""The bare minimum of tus on aiohttp: the ceiling for any aiohttp server on this machine.

POST /files/ (Upload-Length) creates a file on tmpfs and answers 201 with Location;
PATCH streams the body to the file at Upload-Offset; HEAD reports the offset.
No auth, no database, no checksums, no locking: only what the benchmark client needs.

usage: python bench/raw_aiohttp.py --port 8081 --dir /dev/shm/raw-bench
"""

from __future__ import annotations

import argparse
import os
import uuid

from aiohttp import web

TUS = {"Tus-Resumable": "1.0.0"}


def make_app(directory: str, read_bufsize: int) -> web.Application:
    os.makedirs(directory, exist_ok=True)
    uploads: dict[str, list[int]] = {}  # id -> [offset, length]

    async def create(request: web.Request) -> web.Response:
        upload_id = uuid.uuid4().hex
        open(os.path.join(directory, upload_id), "wb").close()
        uploads[upload_id] = [0, int(request.headers["Upload-Length"])]
        host = request.headers.get("Host", request.host)
        return web.Response(status=201, headers={**TUS, "Location": f"http://{host}/files/{upload_id}"})

    async def head(request: web.Request) -> web.Response:
        state = uploads.get(request.match_info["id"])
        if state is None:
            raise web.HTTPNotFound()
        return web.Response(
            status=200,
            headers={
                **TUS,
                "Upload-Offset": str(state[0]),
                "Upload-Length": str(state[1]),
                "Cache-Control": "no-store",
            },
        )

    async def patch(request: web.Request) -> web.Response:
        upload_id = request.match_info["id"]
        state = uploads.get(upload_id)
        if state is None:
            raise web.HTTPNotFound()
        offset = int(request.headers["Upload-Offset"])
        if offset != state[0]:
            return web.Response(status=409, headers={**TUS, "Upload-Offset": str(state[0])})
        with open(os.path.join(directory, upload_id), "r+b", buffering=0) as f:
            f.seek(offset)
            async for chunk in request.content.iter_any():
                f.write(chunk)  # tmpfs: a memcpy into the page cache, never blocks for long
                offset += len(chunk)
        state[0] = offset
        return web.Response(status=204, headers={**TUS, "Upload-Offset": str(offset)})

    app = web.Application(handler_args={"read_bufsize": read_bufsize}, client_max_size=1024**4)
    app.router.add_post("/files/", create)
    app.router.add_post("/files", create)
    app.router.add_route("HEAD", "/files/{id}", head)
    app.router.add_route("PATCH", "/files/{id}", patch)
    app.router.add_get("/", lambda _: web.Response(text="ok"))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--dir", default="/dev/shm/raw-aiohttp-bench")
    parser.add_argument(
        "--read-bufsize",
        type=int,
        default=256 * 1024,
        help="aiohttp read buffer per request (omr-tus uses 256 KiB)",
    )
    args = parser.parse_args()
    web.run_app(
        make_app(args.dir, args.read_bufsize),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=lambda msg: print(msg, flush=True),
    )


if __name__ == "__main__":
    main()
