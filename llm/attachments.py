"""What the model reads of the files a user sent: one rendering, shared by both providers and the token estimate.

A voice message's transcript is the user record's own text, so it needs nothing here. A document's
extracted text follows the user's words, inside a `<document name="...">` block that names the file.
An image (a photo, or an image sent as a document: both are `kind="photo"`) is image input when the
request carries its bytes (`ModelRequest.images`, by `file_id`), and otherwise a one-line note, so that
the model knows something was there.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

from llm.records import Attachment, Image, UserRecord

__all__ = ["IMAGE_NOT_SHOWN", "images_of", "shown_images", "user_text"]

IMAGE_NOT_SHOWN = "[The user sent an image here; it is not shown in this request.]"
"""What the model reads in place of an image whose bytes the request does not carry."""


def images_of(record: UserRecord) -> tuple[Attachment, ...]:
    """The images among a user record's attachments, in the order they were sent."""
    return tuple(attachment for attachment in record.attachments if attachment.kind == "photo")


def shown_images(record: UserRecord, images: Mapping[str, Image]) -> list[Image]:
    """The images of `record` that `images` (a request's, by file_id) carries, in order."""
    return [images[attachment.file_id] for attachment in images_of(record) if attachment.file_id in images]


def user_text(record: UserRecord, shown: Container[str] = ()) -> str:
    """The text the model reads for `record`: a note for each image not in `shown` (file_ids), the
    user's words, then each document's text with its file name."""
    notes = [IMAGE_NOT_SHOWN for attachment in images_of(record) if attachment.file_id not in shown]
    documents = [_document(attachment) for attachment in record.attachments if attachment.kind == "document"]
    parts = [*notes, record.text, *documents] if record.text.strip() else [*notes, *documents]
    return "\n\n".join(parts)


def _document(attachment: Attachment) -> str:
    name = attachment.file_name.replace('"', "'") or "document"
    return f'<document name="{name}">\n{attachment.text}\n</document>'
