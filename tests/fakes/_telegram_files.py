"""Files of the fake Bot API: a registry of real bytes, getFile, and the download route.

    ref = tg.add_file(media.png(), "image/png", kind="photo")   # -> FileRef(file_id, file_unique_id, ...)
    bot = Bot(tg.token, base_url=tg.base_url, base_file_url=tg.base_file_url)
    data = await (await bot.get_file(ref.file_id)).download_as_bytearray()

As on Telegram: getFile answers `file_path` (relative, e.g. `voice/file_3.oga`) and `file_size`;
a file over 20 MB answers 400 "Bad Request: file is too big"; the bytes are served at
`/file/bot<token>/<file_path>` once getFile has handed out that path; an unknown path is 404.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import mimetypes
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes._telegram_common import ApiError, error_response

if TYPE_CHECKING:
    from tests.fakes.telegram_server import FakeTelegramServer

MAX_DOWNLOAD = 20 * 1024 * 1024
"""Telegram's limit for bots downloading a file (getFile)."""

# Telegram's file_id prefixes by kind (the first bytes encode the type), so ids look like the real ones.
_ID_PREFIX = {
    "voice": "AwACAgIAAxkBAAI",
    "audio": "CQACAgIAAxkBAAI",
    "photo": "AgACAgIAAxkBAAI",
    "document": "BQACAgIAAxkBAAI",
    "video": "BAACAgIAAxkBAAI",
    "sticker": "CAACAgIAAxkBAAI",
    "animation": "CgACAgIAAxkBAAI",
    "video_note": "DQACAgIAAxkBAAI",
}
_FOLDER = {
    "voice": ("voice", ".oga"),
    "audio": ("music", ".mp3"),
    "photo": ("photos", ".jpg"),
    "document": ("documents", ""),
    "video": ("videos", ".mp4"),
    "sticker": ("stickers", ".webp"),
    "animation": ("animations", ".mp4"),
    "video_note": ("video_notes", ".mp4"),
}


@dataclass(frozen=True)
class FileRef:
    """A file the fake server holds: what updates and getFile name it by."""

    file_id: str
    file_unique_id: str
    file_size: int
    file_path: str
    mime_type: str | None
    file_name: str | None
    kind: str


@dataclass(frozen=True)
class Download:
    """One successful download of a file's bytes."""

    file_id: str
    file_path: str
    size: int
    time: float


class FilesMixin:
    """getFile and downloads for FakeTelegramServer (see the module docstring)."""

    download_delay: float = 0.0
    """Seconds each download waits before its bytes are sent (concurrent downloads overlap)."""
    downloads_together: int = 0
    """When set, each download waits (up to 5 s) until this many are in flight at once: a test can
    then tell downloads that may overlap from ones that are held back, whatever the machine's load."""

    def _init_files(self) -> None:
        self._files: dict[str, tuple[FileRef, bytes]] = {}
        self._paths: dict[str, str] = {}
        self._served_paths: set[str] = set()
        self._file_numbers = itertools.count(1)
        self._downloads: list[Download] = []
        self._downloading = 0
        self.max_concurrent_downloads = 0
        """The most downloads that were in flight at once."""

    @property
    def base_file_url(self: FakeTelegramServer) -> str:
        """python-telegram-bot's `base_file_url` for this server (pass it to `Bot(...)`)."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    def add_file(
        self,
        data: bytes,
        mime_type: str | None = None,
        *,
        file_name: str | None = None,
        kind: str = "document",
        file_size: int | None = None,
    ) -> FileRef:
        """Register bytes as a Telegram file and return its ids. `file_size` overrides the size Telegram
        reports (so a test can declare a file over the 20 MB limit without holding 20 MB)."""
        if kind not in _ID_PREFIX:
            raise ValueError(f"unknown file kind {kind!r}; one of {sorted(_ID_PREFIX)}")
        number = next(self._file_numbers)
        folder, extension = _FOLDER[kind]
        if kind == "document" or (kind == "audio" and file_name):
            extension = os.path.splitext(file_name or "")[1] or mimetypes.guess_extension(mime_type or "") or ""
        tail = base64.urlsafe_b64encode(number.to_bytes(4, "big") + os.urandom(30)).decode().rstrip("=")
        unique = base64.urlsafe_b64encode(number.to_bytes(3, "big") + os.urandom(6)).decode().rstrip("=")
        ref = FileRef(
            file_id=_ID_PREFIX[kind] + tail,
            file_unique_id="AgAD" + unique,
            file_size=len(data) if file_size is None else file_size,
            file_path=f"{folder}/file_{number}{extension}",
            mime_type=mime_type,
            file_name=file_name,
            kind=kind,
        )
        with self._lock:
            self._files[ref.file_id] = (ref, bytes(data))
            self._paths[ref.file_path] = ref.file_id
        return ref

    def file_bytes(self, file_id: str) -> bytes:
        """The bytes registered (or uploaded by the bot) under `file_id`; KeyError if none."""
        with self._lock:
            return self._files[file_id][1]

    def file_ref(self, file_id: str) -> FileRef:
        """The FileRef of a registered file; KeyError if none."""
        with self._lock:
            return self._files[file_id][0]

    @property
    def downloads(self) -> list[Download]:
        """Successful downloads, in order."""
        with self._lock:
            return list(self._downloads)

    def expire_file_links(self) -> None:
        """Make every handed-out file path unservable (as Telegram's links expire after an hour):
        the next download needs a new getFile."""
        with self._lock:
            self._served_paths.clear()

    async def _m_getFile(self: FakeTelegramServer, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id") or "")
        if not file_id:
            raise ApiError(400, "Bad Request: file_id is empty")
        with self._lock:
            entry = self._files.get(file_id)
        if entry is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        ref = entry[0]
        if ref.file_size > MAX_DOWNLOAD:
            raise ApiError(400, "Bad Request: file is too big")
        with self._lock:
            self._served_paths.add(ref.file_path)
        return {
            "file_id": ref.file_id,
            "file_unique_id": ref.file_unique_id,
            "file_size": ref.file_size,
            "file_path": ref.file_path,
        }

    async def _download(self: FakeTelegramServer, path: str) -> web.StreamResponse:
        """GET /file/bot<token>/<file_path>."""
        prefix, _, file_path = path.removeprefix("file/").partition("/")
        with self._lock:
            self._state.calls.append("download")
            self._state.call_times.append(time.monotonic())
            self._notify()
        try:
            self._check_fault("download", {})
        except ApiError as exc:
            return error_response(exc.status, exc.description, exc.parameters)
        with self._lock:
            file_id = self._paths.get(file_path) if file_path in self._served_paths else None
            entry = self._files.get(file_id) if file_id else None
        if prefix != f"bot{self.token}" or entry is None:
            return error_response(404, "Not Found")
        ref, data = entry
        with self._lock:
            self._downloading += 1
            self.max_concurrent_downloads = max(self.max_concurrent_downloads, self._downloading)
        try:
            deadline = time.monotonic() + 5.0
            while self._downloading < self.downloads_together and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            if self.download_delay:
                await asyncio.sleep(self.download_delay)
        finally:
            with self._lock:
                self._downloading -= 1
        with self._lock:
            self._downloads.append(Download(ref.file_id, ref.file_path, len(data), time.monotonic()))
            self._notify()
        return web.Response(body=data, content_type="application/octet-stream")

    async def await_downloads(self: FakeTelegramServer, count: int = 1, timeout: float = 5.0) -> list[Download]:
        """Await until `count` downloads have completed; return them all."""
        await self._await(lambda: len(self._downloads) >= count, timeout, f"{count} download(s)")
        return self.downloads
