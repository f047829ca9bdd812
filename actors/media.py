"""The files users send, made into what a turn records and the model reads: voice transcribed, images
decoded and scaled, documents' text extracted; and the images of a conversation fetched again when a
later request shows them.

The conversation actor calls `Media.prepare` before it records a user message, so that what is recorded
is what the file said (a transcript, a document's text, an image's reference by `file_id` and its
size): a replay after a restart needs nothing from the user again, and a crash before the record is
written (mid-transcription, say) simply prepares the message again. Files come from a `FileSource`
(Telegram's, in `channels.telegram.media`); CPU work runs in `Workers` threads with a timeout; files
over 2 MB are held in memory a few at a time (`MediaSettings.large_downloads`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from actors import texts
from actors._workers import Workers, WorkTimedOut
from actors.protocol import UserMessage
from conf.settings import MediaSettings
from llm.attachments import images_of
from llm.context import ImageCost, anthropic_image_tokens
from llm.records import Attachment, Image, ModelMessage, UserRecord
from llm.speech import TRANSCRIPTION_EXTENSIONS, SpeechClient, SpeechError

if TYPE_CHECKING:
    from actors.voice import VoiceReplies

__all__ = [
    "ConversationMedia",
    "Downloaded",
    "FileSource",
    "FileTooBig",
    "FileUnavailable",
    "Media",
    "MediaError",
    "Prepared",
]

log = structlog.get_logger(__name__)

_LARGE_BYTES = 2_000_000
_MB = 1_000_000


class MediaError(Exception):
    """A file could not be fetched."""


class FileTooBig(MediaError):
    """The file is larger than `limit` bytes (ours, or Telegram's 20 MB for bots)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"file larger than {limit} bytes")
        self.limit = limit


class FileUnavailable(MediaError):
    """The file could not be downloaded (after retries): Telegram failed or the link expired."""


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A file's bytes, and its path on the server (whose extension tells an audio file's format)."""

    data: bytes
    file_path: str = ""


class FileSource(Protocol):
    """Where the files users send are fetched from."""

    async def download(self, file_id: str, *, declared_size: int | None, max_bytes: int) -> Downloaded:
        """The file's bytes. Raises FileTooBig (checked before downloading where the size is known, and
        while downloading) or FileUnavailable. Never blocks the event loop."""
        ...


@dataclass(frozen=True, slots=True)
class Prepared:
    """A user message with its files read: the text to record (a voice message's transcript, the
    caption), the attachments to record, or, when nothing of it could be read, the `notice` to answer."""

    text: str
    attachments: tuple[Attachment, ...] = ()
    notice: str | None = None


class Media:
    """Reads the files of user messages and fetches images for model requests (see the module docstring).

    `speech` transcribes voice messages (None, or `transcription=False`: voice input is off). Close with `aclose`.
    """

    def __init__(
        self,
        files: FileSource,
        settings: MediaSettings,
        *,
        speech: SpeechClient | None = None,
        transcription: bool = True,
    ) -> None:
        self._files = files
        self._settings = settings
        self._speech = speech if transcription else None
        self._workers = Workers(settings.workers, settings.work_timeout_seconds)
        self._large = asyncio.Semaphore(settings.large_downloads)
        self._cache = _ImageCache(settings.image_cache_bytes)

    # -- user messages ----------------------------------------------------------------------------

    async def prepare(self, message: UserMessage) -> Prepared:
        """Read every file of `message` (concurrently); never raises but for cancellation (and bugs)."""
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._read(item), name=f"media-read-{item.kind}") for item in message.attachments
            ]
        results = [task.result() for task in tasks]
        read = tuple(result for result in results if isinstance(result, Attachment))
        problems = list(dict.fromkeys(result for result in results if isinstance(result, str)))
        if not read:
            return Prepared(message.text, (), " ".join(problems) or texts.UNREADABLE)
        spoken = [item.text for item in read if item.kind in ("voice", "audio")]
        parts = [*spoken, message.text] if message.text.strip() else spoken
        # Some files of an album could not be read: the model says so with its answer.
        parts += [f"[{problem}]" for problem in problems]
        return Prepared("\n\n".join(parts), read)

    async def _read(self, item: Attachment) -> Attachment | str:
        """The attachment with what it said, or the user's explanation of why it could not be read."""
        name = _name(item)
        started = time.perf_counter()
        try:
            if item.kind in ("voice", "audio"):
                result = await self._transcribe(item)
            elif item.kind == "photo":
                result = await self._image(item, self._settings.max_photo_bytes)
            else:
                result = await self._document(item)
        except FileTooBig as exc:
            result = texts.FILE_TOO_BIG.format(name=name, limit=max(1, exc.limit // _MB))
        except FileUnavailable:
            result = texts.FILE_DOWNLOAD_FAILED.format(name=name)
        except WorkTimedOut:
            result = texts.FILE_TOO_SLOW.format(name=name)
        except SpeechError as exc:
            log.warning("voice_transcription_failed", status=exc.status, retryable=exc.retryable, error=str(exc))
            result = texts.VOICE_FAILED
        ms = round((time.perf_counter() - started) * 1000, 2)
        outcome = "ok" if isinstance(result, Attachment) else "refused"
        log.info("media_read", kind=item.kind, size=item.size, outcome=outcome, duration_ms=ms)
        return result

    async def _transcribe(self, item: Attachment) -> Attachment | str:
        if self._speech is None:
            return texts.VOICE_OFF
        async with self._fetch(item, self._settings.max_voice_bytes) as downloaded:
            file_name = _audio_file_name(item, downloaded)
            transcript = await self._speech.transcribe(downloaded.data, file_name, item.mime_type)
        if not transcript:
            return texts.VOICE_EMPTY
        return dataclasses.replace(item, text=transcript)

    async def _image(self, item: Attachment, max_bytes: int) -> Attachment | str:
        async with self._fetch(item, max_bytes) as downloaded:
            return await self._image_from(item, downloaded.data)

    async def _image_from(self, item: Attachment, data: bytes) -> Attachment | str:
        result = await self._workers.run(functools.partial(_image_input, data, self._settings.max_image_side))
        if isinstance(result, str):
            return texts.FILE_PROBLEMS[result].format(name=_name(item))
        image, width, height = result
        self._cache.put(item.file_id, image)
        return dataclasses.replace(item, kind="photo", width=width, height=height)

    async def _document(self, item: Attachment) -> Attachment | str:
        from llm.documents import DocumentError, read_document, sniff

        async with self._fetch(item, self._settings.max_document_bytes) as downloaded:
            data = downloaded.data
            if sniff(data[:8192]) == "image":
                # An image sent as a file: shown as an image, recorded as one (it keeps its file name).
                return await self._image_from(item, data)
            work = functools.partial(read_document, data, max_chars=self._settings.max_document_chars)
            try:
                document = await self._workers.run(work)
            except DocumentError as exc:
                return texts.FILE_PROBLEMS[exc.problem].format(name=_name(item))
        return dataclasses.replace(item, text=document.text)

    @asynccontextmanager
    async def _fetch(self, item: Attachment, max_bytes: int) -> AsyncIterator[Downloaded]:
        """The file's bytes for the block; a large file holds one of the few places for large files
        until the block ends (its bytes and what is decoded from them are the memory at stake)."""
        large = item.size is None or item.size > _LARGE_BYTES
        async with self._large if large else nullcontext():
            yield await self._files.download(item.file_id, declared_size=item.size, max_bytes=max_bytes)

    # -- model requests ---------------------------------------------------------------------------

    async def images(self, messages: Sequence[ModelMessage]) -> dict[str, Image]:
        """The images of the newest `max_images_per_request` of `messages`' images, by file_id: from the
        cache, or downloaded and prepared again (concurrently). One that cannot be had is left out (the
        model reads a note in its place)."""
        wanted: list[Attachment] = []
        limit = self._settings.max_images_per_request
        for message in reversed(messages):
            if isinstance(message, UserRecord) and message.attachments:
                wanted.extend(reversed(images_of(message)))
            if len(wanted) >= limit:
                break
        wanted = wanted[:limit]
        found = {item.file_id: image for item in wanted if (image := self._cache.get(item.file_id)) is not None}
        missing = [item for item in wanted if item.file_id not in found]
        if missing:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._fetch_image(item), name="media-image") for item in missing]
            found |= {
                item.file_id: image for item, task in zip(missing, tasks, strict=True) if (image := task.result())
            }
        return found

    async def _fetch_image(self, item: Attachment) -> Image | None:
        max_bytes = self._settings.max_document_bytes if item.file_name else self._settings.max_photo_bytes
        try:
            async with self._fetch(item, max_bytes) as downloaded:
                work = functools.partial(_image_input, downloaded.data, self._settings.max_image_side)
                result = await self._workers.run(work)
        except (MediaError, WorkTimedOut) as exc:
            log.warning("media_image_unavailable", error=type(exc).__name__)
            return None
        if isinstance(result, str):
            log.warning("media_image_unreadable", problem=result)
            return None
        self._cache.put(item.file_id, result[0])
        return result[0]

    async def aclose(self) -> None:
        """Stop the worker threads (work in flight ends in its own time)."""
        self._workers.close()


@dataclass(frozen=True, slots=True)
class ConversationMedia:
    """What every conversation shares to read files and speak: the reader, voice replies (None: off),
    and the configured provider's image token formula. Here, not beside the actor that uses it
    (`actors.media_conversation`), so that building it at start-up does not load the turn loop."""

    media: Media
    voice: VoiceReplies | None = None
    image_cost: ImageCost = anthropic_image_tokens


def _image_input(data: bytes, max_side: int) -> tuple[Image, int, int] | str:
    """Worker thread: the image as the model gets it, with its size; or the problem's key in FILE_PROBLEMS."""
    from llm.vision import ImageError, normalise_image

    try:
        image = normalise_image(data, max_side=max_side)
    except ImageError as exc:
        return exc.problem if exc.problem == "not_an_image" else f"{exc.problem}_image"
    encoded = base64.b64encode(image.data).decode("ascii")
    return Image(image.mime_type, encoded), image.width, image.height


def _name(item: Attachment) -> str:
    """How the user's file is named to them."""
    if item.file_name:
        return f"“{item.file_name}”"
    return {"photo": "That image", "voice": "That voice message", "audio": "That audio file"}.get(
        item.kind, "That file"
    )


_AUDIO_SIGNATURES = ((b"OggS", "ogg"), (b"fLaC", "flac"), (b"ID3", "mp3"), (b"\x1a\x45\xdf\xa3", "webm"))


def _audio_file_name(item: Attachment, downloaded: Downloaded) -> str:
    """A file name whose extension the transcription endpoint accepts (it reads the format from it)."""
    for candidate in (downloaded.file_path, item.file_name):
        extension = candidate.rsplit(".", 1)[-1].lower() if "." in candidate else ""
        if extension in TRANSCRIPTION_EXTENSIONS:
            return f"{item.kind}.{extension}"
    data = downloaded.data
    for signature, extension in _AUDIO_SIGNATURES:
        if data.startswith(signature):
            return f"{item.kind}.{extension}"
    if data[:4] == b"RIFF":
        return f"{item.kind}.wav"
    if data[4:8] == b"ftyp":
        return f"{item.kind}.m4a"
    return f"{item.kind}.mp3" if data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2") else f"{item.kind}.ogg"


class _ImageCache:
    """Prepared images by file_id, the least recently used dropped past `max_bytes` (of base64)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._items: OrderedDict[str, Image] = OrderedDict()
        self._size = 0

    def get(self, file_id: str) -> Image | None:
        image = self._items.get(file_id)
        if image is not None:
            self._items.move_to_end(file_id)
        return image

    def put(self, file_id: str, image: Image) -> None:
        if len(image.data_base64) > self._max or file_id in self._items:
            return
        self._items[file_id] = image
        self._size += len(image.data_base64)
        while self._size > self._max:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped.data_base64)
