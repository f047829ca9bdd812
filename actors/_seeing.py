"""A conversation's chat model with its images: each request is given the bytes of the images it shows
(fetched by `Media.images`), and a model that refuses image input is found out."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog

from actors import texts
from llm import ChatModel, Image, LLMError, LLMRejected, ModelMessage, ModelReply, ModelRequest

__all__ = ["SeeingModel"]

log = structlog.get_logger(__name__)

ImageLoader = Callable[[Sequence[ModelMessage]], Awaitable[Mapping[str, Image]]]


class SeeingModel:
    """Wraps a conversation's chat model: every request carries the images of its messages (`load`).

    When the provider rejects a request that has images (HTTP 400), the same request is sent once more
    without them (each image is then a note the model reads). If that one is taken, the images were the
    trouble: the model cannot see, `sees` turns False (no image is sent from then on), `refused` is set
    for the conversation to record, and the answer begins with CANNOT_SEE_IMAGES, the one line that
    tells the user. If it is rejected too, the first rejection stands.
    """

    def __init__(self, model: ChatModel, load: ImageLoader) -> None:
        self._model = model
        self._load = load
        self.sees = True
        """False once the model refused images (or the conversation recorded that it did)."""
        self.refused = False
        """Set when a refusal was found; the conversation records it and clears this."""
        self._line_owed = False

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Ask with the request's images; see the class docstring for a refusal."""
        images = await self._load(request.messages) if self.sees else {}
        if not images:
            return self._told(await self._model.complete(request))
        try:
            return await self._model.complete(dataclasses.replace(request, images=images))
        except LLMRejected as exc:
            if exc.status != 400:
                raise
            rejected = exc
        try:
            reply = await self._model.complete(request)
        except LLMError:
            raise rejected from None
        log.warning("model_refuses_images", status=rejected.status, images=len(images))
        self.sees, self.refused, self._line_owed = False, True, True
        return self._told(reply)

    def _told(self, reply: ModelReply) -> ModelReply:
        """The reply, beginning with the one line about images if it is owed and this is the answer."""
        if not self._line_owed or reply.tool_calls:
            return reply
        self._line_owed = False
        return dataclasses.replace(reply, text=f"{texts.CANNOT_SEE_IMAGES}\n\n{reply.text}".strip())

    async def aclose(self) -> None:
        """Nothing to close: the wrapped model belongs to the system."""
