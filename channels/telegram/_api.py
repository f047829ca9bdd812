"""Bot API calls made through `Bot.do_api_request`, without PTB's object layer, where it costs most.

A reply's `sendMessage` is the assistant's most frequent call. Through `Bot.send_message`, PTB turns
each of its two dozen parameters into a request parameter and the answer into a `Message` with all
its sub-objects: half the CPU of a send (bench/http_clients.py). The call made here sends the same
JSON and reads the message id from the answer; errors are PTB's own, as for every other call.
"""

from __future__ import annotations

__all__ = ["SEND_MESSAGE", "send_message_parameters"]

SEND_MESSAGE = "sendmessage"
"""sendMessage, for `Bot.do_api_request`: Bot API method names are case-insensitive, and PTB warns
when the name it is given is one of its own methods' (it would rather build a `Message`)."""


def send_message_parameters(
    chat_id: int, text: str, parse_mode: str | None, thread_id: int | None, reply_to: int | None
) -> dict[str, object]:
    """sendMessage's parameters, those that are set only (as PTB sends them)."""
    parameters: dict[str, object] = {"chat_id": chat_id, "text": text}
    if parse_mode is not None:
        parameters["parse_mode"] = parse_mode
    if thread_id is not None:
        parameters["message_thread_id"] = thread_id
    if reply_to is not None:
        parameters["reply_to_message_id"] = reply_to
        parameters["allow_sending_without_reply"] = True
    return parameters
