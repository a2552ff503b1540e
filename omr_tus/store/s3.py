"""A store on any S3 API (AWS, Ceph RGW, SeaweedFS), laid out as tusd's s3store:

- `<prefix><id>`: one multipart upload per upload, completed into the file when its last byte
  arrives;
- `<prefix><id>.info`: the multipart upload's id (JSON), so any node can find it;
- `<prefix><id>.part`: bytes at the end of a request too few for a part (S3 wants 5 MiB but for
  the last), kept until the next request takes them back.

The offset is what the stored parts and the `.part` object hold, so every node derives the same
one. A part is spooled to a temporary file before it is sent (with its MD5, computed in a
thread, for S3 to check), so memory stays flat whatever the part size.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .base import WriteProgress
from .fileio import write_all

log = logging.getLogger("omr_tus.store.s3")
MIN_PART = 5 * 1024 * 1024  # S3's minimum for every part but the last
GATHER = 1024 * 1024  # received blocks go to the spool file in writes of about this size
READ_BLOCK = 1024 * 1024
CACHED = 4096  # uploads whose state a process remembers


@dataclasses.dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str = "uploads/"
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    part_size: int = 16 * 1024 * 1024


@dataclasses.dataclass
class _Upload:
    """What the bucket holds of an upload in progress."""

    multipart_id: str
    parts: list[tuple[int, str, int]]  # number, ETag, size
    tail: int  # bytes in the .part object

    @property
    def size(self) -> int:
        return sum(p[2] for p in self.parts) + self.tail


class _Spool:
    """One part on its way: a temporary file and its MD5, written in a pool thread."""

    def __init__(self, directory: Path, pool: ThreadPoolExecutor):
        self._pool = pool
        fd, name = tempfile.mkstemp(prefix="part-", dir=directory)
        self.fd, self.path = fd, Path(name)
        os.unlink(name)  # nothing is left behind if the process dies; the fd keeps it
        self.md5 = hashlib.md5()
        self.size = 0

    def _write(self, blocks: list) -> int:
        n = write_all(self.fd, blocks, self.size)
        for block in blocks:
            self.md5.update(block)
        return n

    async def add(self, blocks: list) -> None:
        self.size += await asyncio.get_running_loop().run_in_executor(self._pool, self._write, blocks)

    def reader(self):
        """A file object over the spooled bytes, for botocore to send (and rewind on a retry)."""
        return os.fdopen(os.dup(self.fd), "rb")

    def content_md5(self) -> str:
        return base64.b64encode(self.md5.digest()).decode()

    def close(self) -> None:
        os.close(self.fd)


class S3Store:
    min_part_size = MIN_PART

    def __init__(self, config: S3Settings, spool_dir: Path, threads: int = 8):
        if config.part_size < MIN_PART:
            raise ValueError(f"s3_part_size must be at least {MIN_PART} bytes")
        self.config = config
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3spool")
        self._uploads: OrderedDict[str, _Upload] = OrderedDict()  # as this process last saw them
        self._stack = contextlib.AsyncExitStack()
        # aiobotocore builds its client's methods at run time from botocore's service model,
        # so there is no static type to give it
        self.client: Any = None

    async def open(self) -> S3Store:
        from aiobotocore.session import get_session
        from botocore.config import Config

        c = self.config
        config = Config(
            # S3-compatible servers differ in what they accept: no aws-chunked trailers, path-style
            # URLs on a server of one's own (AWS picks virtual hosts itself), and no payload hash in
            # the signature (each part carries its Content-MD5 instead, computed off the event
            # loop; botocore would hash it on the loop otherwise).
            s3={"addressing_style": "path" if c.endpoint else "auto", "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 4, "mode": "standard"},
            max_pool_connections=64,
            connect_timeout=10,
            read_timeout=120,
        )
        self.client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=c.endpoint or None,
                region_name=c.region,
                aws_access_key_id=c.access_key or None,
                aws_secret_access_key=c.secret_key or None,
                config=config,
            )
        )
        return self

    async def close(self) -> None:
        await self._stack.aclose()
        self._pool.shutdown(wait=True)

    def key(self, upload_id: str, suffix: str = "") -> str:
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise ValueError(f"invalid upload id {upload_id!r}")
        return f"{self.config.prefix}{upload_id}{suffix}"

    def _args(self, upload_id: str, suffix: str = "") -> dict:
        return {"Bucket": self.config.bucket, "Key": self.key(upload_id, suffix)}

    # -- the core interface ---------------------------------------------------
    async def create(self, upload_id: str) -> None:
        made = await self.client.create_multipart_upload(**self._args(upload_id))
        multipart_id = made["UploadId"]
        try:
            await self.client.put_object(
                **self._args(upload_id, ".info"),
                ContentType="application/json",
                Body=json.dumps({"id": upload_id, "multipart_id": multipart_id}).encode(),
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.client.abort_multipart_upload(**self._args(upload_id), UploadId=multipart_id)
            raise
        self._remember(upload_id, _Upload(multipart_id, [], 0))

    async def size(self, upload_id: str) -> int:
        """Always asked of the bucket (another node may have written since): the stored parts
        and the .part object, or the file's size once complete."""
        state = await self._load(upload_id)
        if state is None:
            return await self._object_size(upload_id) or 0
        return state.size

    async def write(
        self, upload_id: str, offset: int, blocks: AsyncIterable[bytes], progress: WriteProgress
    ) -> int:
        """Parts of part_size are sent as they fill, one at a time while the next one is spooled;
        whatever is left at the end (the body done or broken) is kept: as a part if it is big
        enough, else as the .part object."""
        state = self._uploads.get(upload_id)
        if state is None or state.size != offset:
            state = await self._load(upload_id)
        if state is None:
            raise FileNotFoundError(f"upload {upload_id} has no multipart upload in the bucket")
        if state.size != offset:
            raise ValueError(f"upload {upload_id}: the bucket holds {state.size} bytes, not {offset}")
        spool = await self._resume_spool(upload_id, state, progress)
        sending: asyncio.Task | None = None
        gathered: list = []
        gathered_size = 0
        try:
            async for block in blocks:
                progress.last_activity = time.monotonic()
                view = memoryview(block)
                while view:
                    take = min(len(view), self.config.part_size - spool.size - gathered_size)
                    gathered.append(view[:take])
                    gathered_size += take
                    view = view[take:]
                    if spool.size + gathered_size == self.config.part_size:
                        await spool.add(gathered)
                        gathered, gathered_size = [], 0
                        if sending is not None:
                            await asyncio.shield(sending)
                        sending = asyncio.ensure_future(self._send_part(upload_id, state, spool, progress))
                        spool = _Spool(self.spool_dir, self._pool)
                    elif gathered_size >= GATHER:
                        await spool.add(gathered)
                        gathered, gathered_size = [], 0
        finally:
            # Even when the body broke or the request was cancelled: what arrived is kept.
            await asyncio.shield(self._keep_rest(upload_id, state, spool, gathered, sending, progress))
        return progress.written

    async def _keep_rest(
        self,
        upload_id: str,
        state: _Upload,
        spool: _Spool,
        gathered: list,
        sending: asyncio.Task | None,
        progress: WriteProgress,
    ) -> None:
        try:
            if gathered:
                await spool.add(gathered)
            if sending is not None:
                await sending
            if spool.size >= MIN_PART:
                await self._send_part(upload_id, state, spool, progress)
            elif spool.size:
                await self._put_tail(upload_id, state, spool, progress)
            else:
                spool.close()
        except BaseException:
            spool.close()
            raise

    async def _send_part(
        self, upload_id: str, state: _Upload, spool: _Spool, progress: WriteProgress
    ) -> None:
        number = state.parts[-1][0] + 1 if state.parts else 1
        etag = await self._upload_part(upload_id, state.multipart_id, number, spool)
        state.parts.append((number, etag, spool.size))
        progress.written += spool.size

    async def _upload_part(self, upload_id: str, multipart_id: str, number: int, spool: _Spool) -> str:
        sent = await self._send(
            spool, self.client.upload_part, **self._args(upload_id), UploadId=multipart_id, PartNumber=number
        )
        return sent["ETag"]

    @staticmethod
    async def _send(spool: _Spool, call, **args) -> dict:
        """The spooled bytes as the body of an S3 call, with their Content-MD5; the spool is
        closed whatever happens."""
        try:
            with spool.reader() as body:
                return await call(**args, Body=body, ContentLength=spool.size, ContentMD5=spool.content_md5())
        finally:
            spool.close()

    async def write_part(
        self, upload_id: str, number: int, blocks: AsyncIterable[bytes], progress: WriteProgress
    ) -> int:
        """All of the body as part `number`, sent once it has all arrived (a body that breaks
        stores nothing: its chunk is sent again)."""
        multipart_id = await self._multipart_id(upload_id)
        if multipart_id is None:
            raise FileNotFoundError(f"upload {upload_id} has no multipart upload in the bucket")
        spool = _Spool(self.spool_dir, self._pool)
        try:
            gathered: list = []
            gathered_size = 0
            async for block in blocks:
                progress.last_activity = time.monotonic()
                gathered.append(block)
                gathered_size += len(block)
                if gathered_size >= GATHER:
                    await spool.add(gathered)
                    gathered, gathered_size = [], 0
            await spool.add(gathered)
        except BaseException:
            spool.close()
            raise
        self._uploads.pop(upload_id, None)  # its parts are no longer a sequence this process knows
        await self._upload_part(upload_id, multipart_id, number, spool)
        progress.written += spool.size
        return spool.size

    async def _put_tail(self, upload_id: str, state: _Upload, spool: _Spool, progress: WriteProgress) -> None:
        await self._send(spool, self.client.put_object, **self._args(upload_id, ".part"))
        state.tail = spool.size
        progress.written += spool.size

    async def _resume_spool(self, upload_id: str, state: _Upload, progress: WriteProgress) -> _Spool:
        """A new spool, starting with the .part object's bytes if there is one. The object is
        deleted at once, as tusd does: if this node dies (or the bucket fails) before they are
        sent again, the offset moves back and the client resends them, rather than two copies
        being counted. So they leave progress.written until they are stored again."""
        spool = _Spool(self.spool_dir, self._pool)
        if state.tail:
            try:
                async with self._reading(upload_id, ".part") as (_, chunks):
                    async for chunk in chunks:
                        await spool.add([chunk])
                await self.client.delete_object(**self._args(upload_id, ".part"))
            except BaseException:
                spool.close()
                raise
            state.tail = 0
            progress.written -= spool.size
        return spool

    async def finish(self, upload_id: str) -> None:
        """Completes the multipart upload into the file: the .part object becomes the last
        part (the last may be small), and an upload of no bytes becomes an empty object."""
        state = await self._load(upload_id)
        if state is None:
            if await self._object_size(upload_id) is not None:
                return  # completed already (a retry after a failure further on)
            raise FileNotFoundError(f"upload {upload_id} has no multipart upload in the bucket")
        if state.tail:
            progress = WriteProgress()
            spool = await self._resume_spool(upload_id, state, progress)
            await self._send_part(upload_id, state, spool, progress)
        args = self._args(upload_id)
        if state.parts:
            await self.client.complete_multipart_upload(
                **args,
                UploadId=state.multipart_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag, _ in state.parts]},
            )
        else:
            await self.client.put_object(**args, Body=b"")
            await self.client.abort_multipart_upload(**args, UploadId=state.multipart_id)
        await self.client.delete_object(**self._args(upload_id, ".info"))
        self._uploads.pop(upload_id, None)

    async def delete(self, upload_id: str) -> None:
        state = self._uploads.get(upload_id) or await self._load(upload_id)
        self._uploads.pop(upload_id, None)
        if state is not None:
            with contextlib.suppress(self.client.exceptions.NoSuchUpload):
                await self.client.abort_multipart_upload(**self._args(upload_id), UploadId=state.multipart_id)
        for suffix in (".part", ".info", ""):
            await self.client.delete_object(**self._args(upload_id, suffix))

    def free_space(self) -> int:
        """A bucket has no free-space figure to ask for: uploads are never refused for space."""
        return sys.maxsize

    # -- completed files ----------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _reading(
        self, upload_id: str, suffix: str = ""
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        try:
            got = await self.client.get_object(**self._args(upload_id, suffix))
        except self.client.exceptions.NoSuchKey:  # the store's contract: a missing file is FileNotFoundError
            raise FileNotFoundError(f"{upload_id}{suffix} is not in the bucket") from None
        body = got["Body"]
        try:
            yield got["ContentLength"], body.iter_chunks(READ_BLOCK)
        finally:
            body.close()

    def read(self, upload_id: str):
        """`async with store.read(id) as (size, chunks)`: a completed upload, streamed."""
        return self._reading(upload_id)

    async def download(self, upload_id: str, path: Path) -> None:
        """The completed upload into a local file (written in a thread, renamed when whole)."""
        loop = asyncio.get_running_loop()
        tmp = path.with_name(path.name + f".{os.getpid()}.part")
        fd = await loop.run_in_executor(
            self._pool, lambda: os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        )
        try:
            position = 0
            async with self.read(upload_id) as (_, chunks):
                async for chunk in chunks:
                    position += await loop.run_in_executor(self._pool, write_all, fd, [chunk], position)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)

    async def ready(self) -> None:
        """Raises if the bucket cannot be reached (for /readyz)."""
        await self.client.head_bucket(Bucket=self.config.bucket)

    # -- what the bucket holds ----------------------------------------------------
    async def _load(self, upload_id: str) -> _Upload | None:
        """The upload's state from the bucket; None when it has no multipart upload (complete,
        terminated or never created)."""
        multipart_id = await self._multipart_id(upload_id)
        if multipart_id is None:
            return None
        parts: list[tuple[int, str, int]] = []
        marker = 0
        try:
            while True:
                listed = await self.client.list_parts(
                    **self._args(upload_id), UploadId=multipart_id, PartNumberMarker=marker
                )
                parts += [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed.get("Parts", [])]
                if not listed.get("IsTruncated"):
                    break
                marker = listed["NextPartNumberMarker"]
        except self.client.exceptions.NoSuchUpload:
            self._uploads.pop(upload_id, None)
            return None
        state = _Upload(multipart_id, sorted(parts), await self._object_size(upload_id, ".part") or 0)
        self._remember(upload_id, state)
        return state

    def _remember(self, upload_id: str, state: _Upload) -> None:
        """Kept for the next request of this upload; the oldest are forgotten past CACHED (an
        upload another node finished is never popped here)."""
        self._uploads[upload_id] = state
        self._uploads.move_to_end(upload_id)
        while len(self._uploads) > CACHED:
            self._uploads.popitem(last=False)

    async def _multipart_id(self, upload_id: str) -> str | None:
        known = self._uploads.get(upload_id)
        if known is not None:
            return known.multipart_id
        try:
            got = await self.client.get_object(**self._args(upload_id, ".info"))
            async with got["Body"] as body:
                return json.loads(await body.read())["multipart_id"]
        except self.client.exceptions.NoSuchKey:
            return None

    async def _object_size(self, upload_id: str, suffix: str = "") -> int | None:
        try:
            return (await self.client.head_object(**self._args(upload_id, suffix)))["ContentLength"]
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
