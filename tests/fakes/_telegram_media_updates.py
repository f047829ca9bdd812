"""Updates carrying media, shaped as Telegram sends them, with real bytes behind every file_id.

Each builder registers its file(s) with the server (`add_file`), so the bot can `getFile` and
download them; `data` may be bytes or a FileRef registered beforehand. All return the update_id
(`add_album` a list of them); keyword arguments go to `message()` (user_id, chat_type, ...).
"""

from __future__ import annotations

import functools
import io
import mimetypes
import random
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from tests.fakes import media
from tests.fakes._telegram_files import FileRef
from tests.fakes._telegram_updates import UpdateBuilder, text_entities

# Telegram's photo sizes: boxes of the thumbnails it makes ("s", "m", "x", "y", "w"); photos are
# re-encoded as JPEG and never kept larger than 2560 px on the long side.
PHOTO_BOXES = (90, 320, 800, 1280, 2560)

_MP4_HEADER = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00\x00\x00\x08free"


@functools.lru_cache(maxsize=32)
def _renditions(data: bytes) -> tuple[tuple[int, int, bytes], ...]:
    """(width, height, JPEG) per Telegram photo size of an image; cached, as tests reuse a few images."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as original:
        original.load()
        image = original.convert("RGB")
    boxes: list[int] = []
    for box in PHOTO_BOXES:
        boxes.append(box)
        if box >= max(image.size):
            break
    out: list[tuple[int, int, bytes]] = []
    # Largest first, each size made from the one above it: a 12 MP photo is scaled down once.
    current = image
    for box in reversed(boxes):
        current = current.copy()
        current.thumbnail((box, box), reducing_gap=2.0)
        encoded = io.BytesIO()
        current.save(encoded, "JPEG", quality=87)
        out.append((current.width, current.height, encoded.getvalue()))
    out.reverse()
    return tuple(out)


class MediaUpdateBuilder(UpdateBuilder):
    """Voice, audio, photos, albums, documents, stickers, videos and locations."""

    @abstractmethod
    def add_file(
        self,
        data: bytes,
        mime_type: str | None = None,
        *,
        file_name: str | None = None,
        kind: str = "document",
        file_size: int | None = None,
    ) -> FileRef:
        """Register a file's bytes (see FilesMixin.add_file)."""

    def _file(
        self,
        data: bytes | FileRef,
        kind: str,
        mime_type: str | None,
        file_name: str | None = None,
        file_size: int | None = None,
    ) -> FileRef:
        if isinstance(data, FileRef):
            return data
        return self.add_file(data, mime_type, file_name=file_name, kind=kind, file_size=file_size)

    @staticmethod
    def _file_fields(ref: FileRef) -> dict[str, Any]:
        return {"file_id": ref.file_id, "file_unique_id": ref.file_unique_id, "file_size": ref.file_size}

    @staticmethod
    def _caption(caption: str | None) -> dict[str, Any]:
        if caption is None:
            return {}
        extra: dict[str, Any] = {"caption": caption}
        entities = text_entities(caption)
        if entities:
            extra["caption_entities"] = entities
        return extra

    # -- audio -------------------------------------------------------------------------------------

    def add_voice(
        self,
        chat_id: int,
        data: bytes | FileRef | None = None,
        *,
        duration: int | None = None,
        mime_type: str = "audio/ogg",
        file_size: int | None = None,
        caption: str | None = None,
        **kwargs: Any,
    ) -> int:
        """Queue a voice message (default: the 2 s Ogg Opus fixture); duration read from the Ogg if not given."""
        raw = media.voice_ogg() if data is None else data
        if duration is None:
            duration = 1
            if isinstance(raw, bytes) and media.is_ogg_opus(raw):
                duration = max(1, round(media.opus_info(raw).duration))
        ref = self._file(raw, "voice", mime_type, file_size=file_size)
        voice = self._file_fields(ref) | {"duration": duration, "mime_type": mime_type}
        return self.add_update({"message": self.message(chat_id, voice=voice, **self._caption(caption), **kwargs)})

    def add_audio(
        self,
        chat_id: int,
        data: bytes | FileRef | None = None,
        *,
        file_name: str = "speech.mp3",
        mime_type: str | None = None,
        duration: int = 1,
        title: str | None = None,
        performer: str | None = None,
        file_size: int | None = None,
        caption: str | None = None,
        **kwargs: Any,
    ) -> int:
        """Queue an audio file message (default: the MP3 fixture)."""
        mime = mime_type or mimetypes.guess_type(file_name)[0] or "audio/mpeg"
        ref = self._file(media.speech_mp3() if data is None else data, "audio", mime, file_name, file_size)
        audio = self._file_fields(ref) | {"duration": duration, "file_name": file_name, "mime_type": mime}
        if title:
            audio["title"] = title
        if performer:
            audio["performer"] = performer
        return self.add_update({"message": self.message(chat_id, audio=audio, **self._caption(caption), **kwargs)})

    # -- images ------------------------------------------------------------------------------------

    def photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """The PhotoSize list Telegram makes of an image: JPEG thumbnails in its boxes up to the image's
        own size (at most 2560 px), smallest first, each a registered file."""
        sizes: list[dict[str, Any]] = []
        for width, height, jpeg in _renditions(data):
            ref = self.add_file(jpeg, "image/jpeg", kind="photo")
            sizes.append(self._file_fields(ref) | {"width": width, "height": height})
        return sizes

    def add_photo(
        self,
        chat_id: int,
        caption: str | None = None,
        data: bytes | None = None,
        *,
        media_group_id: str | None = None,
        **kwargs: Any,
    ) -> int:
        """Queue a photo message (default: a 1280x960 PNG, delivered as Telegram's JPEG sizes)."""
        extra: dict[str, Any] = {"photo": self.photo_sizes(media.png(1280, 960) if data is None else data)}
        if media_group_id is not None:
            extra["media_group_id"] = media_group_id
        return self.add_update({"message": self.message(chat_id, **extra, **self._caption(caption), **kwargs)})

    def add_album(
        self, chat_id: int, photos: Sequence[bytes] | int = 2, caption: str | None = None, **kwargs: Any
    ) -> list[int]:
        """Queue an album: one photo message per image, sharing a media_group_id; the caption on the first."""
        images = [media.png(640, 480, seed=i) for i in range(photos)] if isinstance(photos, int) else list(photos)
        group = str(random.randrange(10**17, 10**18))
        return [
            self.add_photo(chat_id, caption if index == 0 else None, image, media_group_id=group, **kwargs)
            for index, image in enumerate(images)
        ]

    def add_sticker(self, chat_id: int, **kwargs: Any) -> int:
        """Queue a sticker message (a real 512x512 WebP)."""
        ref = self.add_file(media.webp(512, 512), "image/webp", kind="sticker")
        sticker = self._file_fields(ref) | {
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "👍",
        }
        return self.add_update({"message": self.message(chat_id, sticker=sticker, **kwargs)})

    # -- documents and the rest --------------------------------------------------------------------

    def add_document(
        self,
        chat_id: int,
        file_name: str = "report.pdf",
        data: bytes | FileRef | None = None,
        mime_type: str | None = None,
        *,
        file_size: int | None = None,
        caption: str | None = None,
        **kwargs: Any,
    ) -> int:
        """Queue a document message. The MIME type is what the sender's app declared (guessed from the
        name unless given, so a test can make it lie); default bytes fit the name (PDF, text)."""
        mime = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        if data is None:
            data = media.pdf_with_text("A report.\nIt has two lines.") if mime == "application/pdf" else None
            data = data if data is not None else media.text_file(1_000)
        ref = self._file(data, "document", mime, file_name, file_size)
        document = self._file_fields(ref) | {"file_name": file_name, "mime_type": mime}
        return self.add_update(
            {"message": self.message(chat_id, document=document, **self._caption(caption), **kwargs)}
        )

    def add_video(
        self,
        chat_id: int,
        data: bytes | FileRef | None = None,
        *,
        duration: int = 3,
        width: int = 640,
        height: int = 360,
        file_name: str = "clip.mp4",
        mime_type: str = "video/mp4",
        file_size: int | None = None,
        caption: str | None = None,
        **kwargs: Any,
    ) -> int:
        """Queue a video message. The default bytes are an MP4 container header only (no frames)."""
        ref = self._file(_MP4_HEADER if data is None else data, "video", mime_type, file_name, file_size)
        video = self._file_fields(ref) | {
            "width": width,
            "height": height,
            "duration": duration,
            "file_name": file_name,
            "mime_type": mime_type,
        }
        return self.add_update({"message": self.message(chat_id, video=video, **self._caption(caption), **kwargs)})

    def add_location(
        self, chat_id: int, latitude: float = 52.520008, longitude: float = 13.404954, **kwargs: Any
    ) -> int:
        """Queue a location message."""
        location = {"latitude": latitude, "longitude": longitude}
        return self.add_update({"message": self.message(chat_id, location=location, **kwargs)})
