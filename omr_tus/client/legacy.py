"""An upload over the legacy chunk API (POST /api/batches/upload-chunk), for networks where
only the existing frontend's route is open.

Each chunk is a multipart request whose form fields come before the chunk, so the server
writes the chunk straight into place instead of spooling it. The server stores a retried
chunk once, so a chunk whose answer was lost is simply sent again.
"""

from __future__ import annotations

import functools

import aiohttp

from .http import Backoff, ClientError, check
from .stream import FileSlice, FileUpload

RETRIES = 3


class LegacyUpload(FileUpload):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.url = self.server + "/api/batches/upload-chunk"
        self.total = max(1, -(-self.size // self.chunk_size))

    async def run(self) -> str:
        """Sends every chunk in order; returns the batch id the final chunk's answer names."""
        answer: dict = {}
        upload_id = None  # the server's name for the upload, from chunk 0's answer
        try:
            for index in range(self.total):
                backoff = Backoff(RETRIES, f"chunk {index + 1}/{self.total}")
                answer = await backoff.run(functools.partial(self._chunk, index, upload_id))
                upload_id = answer["upload_id"]
        finally:
            self.bar.close()
        if not answer.get("batch_id"):
            raise ClientError(f"the server did not complete the upload: {answer.get('message', answer)}")
        return answer["batch_id"]

    async def _chunk(self, index: int, upload_id: str | None) -> dict:
        start = index * self.chunk_size
        self.bar.update(start)  # a retry sends the chunk again from its first byte
        form = aiohttp.FormData()
        fields = {
            "chunk_index": index,
            "total_chunks": self.total,
            "filename": self.path.name,
            "upload_type": self.upload_type,
            "task_id": self.task_id,
            "upload_id": upload_id,
            "is_final_chunk": "true" if index == self.total - 1 else "false",
        }
        for name, value in fields.items():
            if value is not None:
                form.add_field(name, str(value))
        length = min(self.chunk_size, self.size - start)
        form.add_field(
            "chunk",
            FileSlice(self.path, start, length, self.bar.advance),
            filename=self.path.name,
            content_type="application/octet-stream",
        )
        async with self.http.post(self.url, data=form) as response:
            return await (await check(response)).json()
