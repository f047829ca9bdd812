"""Pieces shared by the fake Bot API's modules: errors, request parameters, text rules."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from channels.telegram._html import Atom, EndTag, StartTag, TelegramHtmlError, parse_html, tokenize

MAX_TEXT = 4096
MAX_CAPTION = 1024


class ApiError(Exception):
    """A Bot API error answer: HTTP status, Telegram's description, optional `parameters`."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass(frozen=True)
class Described:
    """A successful result that Telegram answers with a `description` too (setWebhook, deleteWebhook)."""

    result: Any
    description: str


@dataclass(frozen=True)
class Upload:
    """A file uploaded in a multipart request."""

    filename: str | None
    content_type: str | None
    data: bytes


def error_response(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    """Telegram's error body."""
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


async def read_params(request: web.Request) -> dict[str, Any]:
    """Parameters as Telegram reads them: query string, JSON body, or form / multipart fields (files as Upload)."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.read()
        if body:
            try:
                data = json.loads(body)
            except json.JSONDecodeError as exc:
                raise ValueError("can't parse JSON body") from exc
            if not isinstance(data, dict):
                raise ValueError("JSON body must be an object")
            params.update(data)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, str):
                params[key] = value
            elif isinstance(value, web.FileField):
                params[key] = Upload(value.filename, value.content_type, value.file.read())
    return params


def text_of(params: dict[str, Any], *, allow_empty: bool = False, limit: int = MAX_TEXT) -> tuple[str, str, str | None]:
    """(text as sent, visible text, parse_mode) of a `text` parameter, checked as Telegram checks it."""
    text = params.get("text")
    if text is None and allow_empty:
        text = ""
    if not isinstance(text, str) or (not text.strip() and not allow_empty):
        raise ApiError(400, "Bad Request: message text is empty")
    parse_mode = parse_mode_of(params)
    visible = visible_text(text, parse_mode)
    if not visible.strip() and not allow_empty:
        raise ApiError(400, "Bad Request: message text is empty")
    if len(visible) > limit:
        raise ApiError(400, "Bad Request: message is too long")
    return text, visible, parse_mode


def caption_of(params: dict[str, Any]) -> tuple[str | None, str | None]:
    """(visible caption or None, parse_mode) of a media message; 0-1024 characters after parsing."""
    caption = params.get("caption")
    if caption is None or caption == "":
        return None, None
    parse_mode = parse_mode_of(params)
    visible = visible_text(str(caption), parse_mode)
    if len(visible) > MAX_CAPTION:
        raise ApiError(400, "Bad Request: message caption is too long")
    return visible, parse_mode


def parse_mode_of(params: dict[str, Any]) -> str | None:
    """The parse_mode parameter, refused if Telegram does not know it."""
    parse_mode = params.get("parse_mode") or None
    if parse_mode is not None and str(parse_mode).lower() not in ("html", "markdown", "markdownv2"):
        raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode}")
    return parse_mode


def visible_text(text: str, parse_mode: str | None) -> str:
    """What the user sees; HTML that Telegram's parser refuses raises ApiError "can't parse entities"."""
    # Markdown modes are passed through unparsed: the assistant sends HTML only.
    if not (parse_mode and parse_mode.lower() == "html"):
        return text.strip()
    try:
        return parse_html(text).strip()
    except TelegramHtmlError as exc:
        raise ApiError(400, f"Bad Request: can't parse entities: {exc.reason}") from exc


_SAME_ENTITY = {"strong": "b", "em": "i", "ins": "u", "strike": "s", "del": "s", "span": "tg-spoiler"}


def content_signature(text: str, parse_mode: str | None) -> tuple[str, tuple[tuple[Any, ...], ...]]:
    """(visible text, entities) as Telegram stores a message's text: two texts with equal signatures are
    the same message content (so an edit from one to the other is "message is not modified")."""
    if not (parse_mode and parse_mode.lower() == "html"):
        return text.strip(), ()
    visible: list[str] = []
    open_tags: list[tuple[str, tuple[tuple[str, str], ...], int]] = []
    entities: list[tuple[Any, ...]] = []
    for token in tokenize(text):
        if isinstance(token, Atom):
            visible.append(token.char)
        elif isinstance(token, StartTag):
            open_tags.append((_SAME_ENTITY.get(token.name, token.name), token.attributes, len(visible)))
        elif isinstance(token, EndTag):
            name, attributes, start = open_tags.pop()
            if len(visible) > start:
                entities.append((name, attributes, start, len(visible)))
    joined = "".join(visible)
    shift = len(joined) - len(joined.lstrip())
    return joined.strip(), tuple(sorted((n, a, s - shift, e - shift) for n, a, s, e in entities))


def reply_to(params: dict[str, Any]) -> int | None:
    """The message a send replies to (reply_parameters or the older reply_to_message_id)."""
    reply = json_param(params.get("reply_parameters"), "reply_parameters")
    if isinstance(reply, dict) and "message_id" in reply:
        return int(reply["message_id"])
    return optional_int(params.get("reply_to_message_id"), "reply_to_message_id")


def chat_id_of(raw: Any) -> int | str | None:
    """A chat id as Telegram reads one: an integer or an @channelusername."""
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return text if text.startswith("@") else None


def int_or_zero(chat_id: int | str) -> int:
    """A numeric chat id, 0 for a username."""
    return chat_id if isinstance(chat_id, int) else 0


def int_param(raw: Any, name: str, default: int) -> int:
    """An Integer parameter, `default` when absent."""
    value = optional_int(raw, name)
    return default if value is None else value


def optional_int(raw: Any, name: str) -> int | None:
    """An Integer parameter or None; a non-integer is Telegram's 400."""
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f'Bad Request: field "{name}" must be of type Integer') from None


def bool_param(raw: Any) -> bool:
    """A Boolean parameter (JSON true or the string "true")."""
    return raw is True or str(raw).lower() == "true"


def json_param(raw: Any, name: str) -> Any:
    """A parameter that may arrive JSON-encoded (form fields) or already decoded (JSON bodies)."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from None


def json_list(raw: Any) -> list[str] | None:
    """The allowed_updates list, or None when absent."""
    value = json_param(raw, "allowed_updates")
    if value is None:
        return None
    if not isinstance(value, list):
        raise ApiError(400, "Bad Request: can't parse allowed_updates")
    return [str(item) for item in value]


def markup_key(params: dict[str, Any]) -> str:
    """A message's reply markup, canonically encoded (for "message is not modified")."""
    markup = json_param(params.get("reply_markup"), "reply_markup")
    return json.dumps(markup, sort_keys=True) if markup else ""
