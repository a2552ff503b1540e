"""A tus 1.0.0 upload that survives dropped connections and interrupted runs.

The upload URL is saved before the first byte is sent, so a later run of the same command
asks the server (HEAD) how much it has and sends only the rest. Within a run, a failed PATCH
is retried with backoff from the offset the server reports, never from what the client
believes it sent.
"""

from __future__ import annotations

import base64
import mimetypes
from typing import NamedTuple

import aiohttp
from yarl import URL

from .http import Backoff, ClientError, ServerError, check
from .resume import ResumeState
from .stream import FileSlice, FileUpload

TUS = {"Tus-Resumable": "1.0.0"}
RETRIES = 5
GONE = (403, 404, 410)  # a saved upload that expired, was removed or is not ours: start over


class Status(NamedTuple):
    """What the server says about an upload: its offset and, once complete, its batch."""

    offset: int
    batch_id: str | None


def metadata(values: dict[str, str | None]) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items() if value
    )


def status_of(response: aiohttp.ClientResponse) -> Status:
    try:
        offset = int(response.headers["Upload-Offset"])
    except (KeyError, ValueError):
        raise ClientError(
            f"the server's answer has no valid Upload-Offset "
            f"({response.status} {response.method} {response.url})"
        ) from None
    return Status(offset, response.headers.get("Batch-Id"))


class TusUpload(FileUpload):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.endpoint = self.server + "/files/"
        self.state = ResumeState(self.path, self.server, self.upload_type, self.task_id)

    async def run(self) -> str:
        """Uploads the file (or what the server still lacks of it); returns the batch id."""
        url = self.state.url()
        status = await self._saved(url) if url else None
        if url is None or status is None:
            created = await Backoff(RETRIES, "creating the upload").run(self._create)
            url, status = created  # unpacked apart, so run()'s result is not inferred as Optional
            self.state.save(url)
        self.bar.resume_at(status.offset)
        try:
            batch_id = await self._send(url, status)
        finally:
            self.bar.close()
        self.state.forget()
        return batch_id

    async def _saved(self, url: str) -> Status | None:
        try:
            return await Backoff(RETRIES, "checking the saved upload").run(lambda: self._head(url))
        except ServerError as exc:
            if exc.status in GONE:
                return None
            raise

    async def _create(self) -> tuple[str, Status]:
        meta = metadata(
            {
                "filename": self.path.name,
                "filetype": mimetypes.guess_type(self.path.name)[0],
                "upload_type": self.upload_type,
                "task_id": self.task_id,
            }
        )
        headers = {**TUS, "Upload-Length": str(self.size), "Upload-Metadata": meta}
        # Retried like the rest: an upload whose answer was lost is never used again and expires.
        async with self.http.post(self.endpoint, headers=headers) as response:
            await check(response)
            location = response.headers.get("Location")
            if not location:
                raise ClientError("the server created the upload but sent no Location")
            return str(response.url.join(URL(location))), Status(0, response.headers.get("Batch-Id"))

    async def _head(self, url: str) -> Status:
        async with self.http.head(url, headers=TUS) as response:
            return status_of(await check(response))

    async def _send(self, url: str, status: Status) -> str:
        backoff = Backoff(RETRIES, "upload")
        while status.offset < self.size:
            try:
                if backoff.failures:  # the last attempt failed: ask where the server stands
                    status = await self._head(url)
                    self.bar.update(status.offset)
                    if status.offset >= self.size:
                        break
                status = await self._patch(url, status.offset)
                backoff.reset()
            except Exception as exc:
                await backoff.wait(exc)
        if not status.batch_id:
            raise ClientError(f"the upload is complete but the server named no batch ({url})")
        return status.batch_id

    async def _patch(self, url: str, offset: int) -> Status:
        length = min(self.chunk_size, self.size - offset)
        headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        body = FileSlice(self.path, offset, length, self.bar.advance)
        async with self.http.patch(url, data=body, headers=headers) as response:
            if response.status == 409 and response.headers.get("Upload-Offset", str(offset)) != str(offset):
                status = status_of(
                    response
                )  # the server has more (or less) than we thought: go on from there
            else:
                status = status_of(await check(response))
        self.bar.update(status.offset)
        return status
