"""What the bot sends besides plain messages: drafts (sendMessageDraft) and files (sendVoice, ...).

Drafts follow Bot API 10.0 (python-telegram-bot 22.8's `Bot.send_message_draft`): private chats
only (a group answers 400 "TEXTDRAFT_PEER_INVALID", as Telegram does), an integer chat_id, a
non-zero draft_id, text of 0-4096 characters after entity parsing (empty shows Telegram's
"Thinking..." placeholder), HTML checked like sendMessage. `refuse_drafts()` makes the method
answer 400 for a chat or for all, to test fallbacks.

deleteMessage deletes a bot's message (`deleted`); `chat_view` is what a chat shows now: the bot's
messages as last edited, deleted ones left out.

Files: sendVoice takes Ogg Opus (checked page by page), MP3 or M4A, as Telegram documents;
sendPhoto an image Pillow can decode within Telegram's photo limits; sendDocument and sendAudio
any bytes up to 50 MB. The bytes are recorded (`sent_files`, `voices`) and registered, so the
result's file_id can be fetched back with getFile.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.fakes import media
from tests.fakes._telegram_common import (
    ApiError,
    Upload,
    caption_of,
    optional_int,
    reply_to,
    text_of,
)

if TYPE_CHECKING:
    from tests.fakes.telegram_server import FakeTelegramServer

MAX_UPLOAD = 50 * 1024 * 1024
MAX_PHOTO = 10 * 1024 * 1024


@dataclass(frozen=True)
class Draft:
    """A sendMessageDraft call Telegram accepted. `visible_text` is after HTML parsing ("" = placeholder)."""

    chat_id: int
    draft_id: int
    text: str
    parse_mode: str | None
    message_thread_id: int | None
    time: float
    visible_text: str


@dataclass(frozen=True)
class SentFile:
    """A file the bot sent (sendVoice, sendAudio, sendPhoto, sendDocument). `format` is what the bytes
    are ("ogg", "mp3", "m4a", "png", "jpeg", ... or "" if unknown); `duration` is read from Ogg Opus."""

    method: str
    chat_id: int | str
    message_id: int
    kind: str
    data: bytes
    file_id: str
    file_name: str | None
    mime_type: str | None
    format: str
    caption: str | None
    parse_mode: str | None
    reply_to: int | None
    duration: float | None
    time: float


def sniff(data: bytes) -> str:
    """The format of some bytes by their signature."""
    signatures = (
        (b"OggS", "ogg"),
        (b"ID3", "mp3"),
        (b"fLaC", "flac"),
        (b"RIFF", "wav"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpeg"),
        (b"GIF8", "gif"),
        (b"%PDF-", "pdf"),
        (b"\x1a\x45\xdf\xa3", "webm"),
    )
    for magic, name in signatures:
        if data.startswith(magic):
            return "webp" if name == "wav" and data[8:12] == b"WEBP" else name
    if data[4:8] == b"ftyp":
        return "m4a" if data[8:11] in (b"M4A", b"M4B") else "mp4"
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return "mp3"
    return ""


class OutboundMixin:
    """sendMessageDraft, sendVoice, sendAudio, sendPhoto, sendDocument for FakeTelegramServer."""

    def _init_outbound(self) -> None:
        self._deleted: list[tuple[int | str, int]] = []
        self._drafts: list[Draft] = []
        self._sent_files: list[SentFile] = []
        self._draft_refusals: dict[int | None, str] = {}

    # -- drafts ------------------------------------------------------------------------------------

    def refuse_drafts(
        self, on: bool = True, chat_id: int | None = None, description: str = "Bad Request: TEXTDRAFT_PEER_INVALID"
    ) -> None:
        """While on, sendMessageDraft answers 400 `description` (in `chat_id`, or in every chat if None)."""
        with self._lock:
            if on:
                self._draft_refusals[chat_id] = description
            else:
                self._draft_refusals.pop(chat_id, None)

    def drafts(self: FakeTelegramServer, chat_id: int | None = None) -> list[Draft]:
        """Drafts accepted (in one chat, if given), in order."""
        with self._lock:
            return [d for d in self._drafts if chat_id is None or d.chat_id == chat_id]

    async def await_drafts(
        self: FakeTelegramServer, chat_id: int | None = None, count: int = 1, timeout: float = 5.0
    ) -> list[Draft]:
        """Await until `count` drafts were accepted (in `chat_id`, if given); return them."""
        await self._await(lambda: len(self.drafts(chat_id)) >= count, timeout, f"{count} draft(s) in {chat_id}")
        return self.drafts(chat_id)

    async def _m_sendMessageDraft(self: FakeTelegramServer, params: dict[str, Any]) -> Any:
        await self.send_delay()
        raw = params.get("chat_id")
        try:
            chat_id = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ApiError(400, 'Bad Request: field "chat_id" must be of type Integer') from None
        self._check_chat({"chat_id": chat_id})
        draft_id = optional_int(params.get("draft_id"), "draft_id")
        if not draft_id:
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        with self._lock:
            refusal = self._draft_refusals.get(chat_id, self._draft_refusals.get(None))
            kind = self._state.chat_types.get(chat_id, "private" if chat_id > 0 else "group")
        if refusal is not None:
            raise ApiError(400, refusal)
        if kind != "private":
            raise ApiError(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        text, visible, parse_mode = text_of(params, allow_empty=True)
        thread = optional_int(params.get("message_thread_id"), "message_thread_id")
        with self._lock:
            self._drafts.append(Draft(chat_id, draft_id, text, parse_mode, thread, time.monotonic(), visible))
            self._notify()
        return True

    # -- what a chat shows ---------------------------------------------------------------------------

    def deleted(self: FakeTelegramServer, chat_id: int | None = None) -> list[int]:
        """Ids of the bot's messages deleted (in one chat, if given), in order."""
        with self._lock:
            return [message_id for chat, message_id in self._deleted if chat_id is None or chat == chat_id]

    def chat_view(self: FakeTelegramServer, chat_id: int) -> list[str]:
        """The texts (as sent, after their edits) of the bot's text messages a chat shows now, in order:
        what a user reading the chat sees, deleted messages left out."""
        with self._lock:
            ids = [m.message_id for m in self._state.sent if m.chat_id == chat_id]
            return [self._state.current_text[(chat_id, i)][0] for i in ids if (chat_id, i) in self._state.current_text]

    async def _m_deleteMessage(self: FakeTelegramServer, params: dict[str, Any]) -> Any:
        chat_id = self._check_chat(params)
        message_id = optional_int(params.get("message_id"), "message_id")
        with self._lock:
            key = (chat_id, message_id or 0)
            if key not in self._state.current_text:
                raise ApiError(400, "Bad Request: message to delete not found")
            del self._state.current_text[key]
            self._deleted.append(key)
            self._notify()
        return True

    # -- files -------------------------------------------------------------------------------------

    @property
    def sent_files(self: FakeTelegramServer) -> list[SentFile]:
        """Files sent by the bot, in order."""
        with self._lock:
            return list(self._sent_files)

    def voices(self: FakeTelegramServer, chat_id: int | None = None) -> list[SentFile]:
        """sendVoice calls accepted (to one chat, if given)."""
        with self._lock:
            return [f for f in self._sent_files if f.kind == "voice" and (chat_id is None or f.chat_id == chat_id)]

    async def await_voices(
        self: FakeTelegramServer, chat_id: int | None = None, count: int = 1, timeout: float = 5.0
    ) -> list[SentFile]:
        """Await until `count` voice messages were sent (to `chat_id`, if given); return them."""
        await self._await(lambda: len(self.voices(chat_id)) >= count, timeout, f"{count} voice message(s) to {chat_id}")
        return self.voices(chat_id)

    async def _m_sendVoice(self, params: dict[str, Any]) -> Any:
        return await self._send_file(params, "voice", "sendVoice")

    async def _m_sendAudio(self, params: dict[str, Any]) -> Any:
        return await self._send_file(params, "audio", "sendAudio")

    async def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        return await self._send_file(params, "photo", "sendPhoto")

    async def _m_sendDocument(self, params: dict[str, Any]) -> Any:
        return await self._send_file(params, "document", "sendDocument")

    def _upload_of(self: FakeTelegramServer, params: dict[str, Any], field: str) -> Upload:
        value = params.get(field)
        if isinstance(value, str) and value.startswith("attach://"):
            value = params.get(value.removeprefix("attach://"))
        if isinstance(value, Upload):
            return value
        if isinstance(value, str) and value:
            if value.startswith(("http://", "https://")):
                raise ApiError(400, "Bad Request: failed to get HTTP URL content")
            try:
                ref = self.file_ref(value)
            except KeyError:
                raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified") from None
            return Upload(ref.file_name, ref.mime_type, self.file_bytes(value))
        raise ApiError(400, f"Bad Request: there is no {field} in the request")

    async def _send_file(self: FakeTelegramServer, params: dict[str, Any], kind: str, method: str) -> Any:
        await self.send_delay()
        chat_id = self._check_chat(params)
        upload = self._upload_of(params, kind)
        data = upload.data
        if not data:
            raise ApiError(400, "Bad Request: file must be non-empty")
        if len(data) > MAX_UPLOAD:
            raise ApiError(413, "Request Entity Too Large")
        fmt = sniff(data)
        duration: float | None = None
        extra: dict[str, Any]
        if kind == "voice":
            duration = _check_voice(data, fmt)
            mime = {"ogg": "audio/ogg", "mp3": "audio/mpeg", "m4a": "audio/mp4"}[fmt]
            ref = self.add_file(data, mime, kind="voice")
            extra = {"duration": max(1, round(duration or 1)), "mime_type": mime}
        elif kind == "photo":
            sizes = _check_photo(self, data)
            ref = self.file_ref(sizes[-1]["file_id"])
            extra = {}
        else:
            mime = upload.content_type or "application/octet-stream"
            ref = self.add_file(data, mime, file_name=upload.filename, kind=kind)
            extra = {"file_name": upload.filename, "mime_type": mime}
        caption, parse_mode = caption_of(params)
        message_id = self._next_message_id()
        message = self.bot_message(
            chat_id, message_id, "", self._state.chat_types.get(chat_id if isinstance(chat_id, int) else 0)
        )
        del message["text"]
        message[kind] = (
            sizes
            if kind == "photo"
            else {"file_id": ref.file_id, "file_unique_id": ref.file_unique_id, "file_size": ref.file_size, **extra}
        )
        if caption:
            message["caption"] = caption
        record = SentFile(
            method,
            chat_id,
            message_id,
            kind,
            data,
            ref.file_id,
            upload.filename,
            ref.mime_type,
            fmt,
            caption,
            parse_mode,
            reply_to(params),
            duration,
            time.monotonic(),
        )
        with self._lock:
            self._sent_files.append(record)
            self._notify()
        return message


def _check_voice(data: bytes, fmt: str) -> float | None:
    """Telegram's voice notes: OGG encoded with OPUS, or MP3, or M4A. Returns the Ogg's duration."""
    if fmt == "ogg":
        try:
            return media.opus_info(data).duration
        except media.OggError as exc:
            raise ApiError(400, f"Bad Request: wrong voice file: {exc}") from exc
    if fmt in ("mp3", "m4a"):
        return None
    raise ApiError(400, "Bad Request: wrong voice file: must be OGG/Opus, MP3 or M4A")


def _check_photo(server: FakeTelegramServer, data: bytes) -> list[dict[str, Any]]:
    """Telegram's photo rules: at most 10 MB, width + height at most 10000, ratio at most 20."""
    from PIL import Image, UnidentifiedImageError

    from tests.fakes._llm_images import header_size, image_format

    if len(data) > MAX_PHOTO:
        raise ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
    # Dimensions from the header first, so a pixel bomb is refused before anything decodes it.
    size = header_size(data, image_format(data))
    if size is None:
        raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
    width, height = size
    if width + height > 10_000 or max(width, height) > 20 * max(1, min(width, height)):
        raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from exc
    return server.photo_sizes(data)
