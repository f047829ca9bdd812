"""A turn's chat model with the conversation's images: each request is given the bytes of the images it
shows (fetched by `Media.images`), and a model that refuses image input is found out."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog

from llm import ChatModel, Image, LLMError, LLMRejected, ModelMessage, ModelReply, ModelRequest

__all__ = ["ImagesRefused", "SeeingModel"]

log = structlog.get_logger(__name__)

ImageLoader = Callable[[Sequence[ModelMessage]], Awaitable[Mapping[str, Image]]]


class ImagesRefused(LLMRejected):
    """The model refuses image input: it rejected a request with images and took the same without them."""


class SeeingModel:
    """Wraps the chat model for one turn: every request carries the images of its messages (from
    `load`). When the provider rejects a request that has images (HTTP 400), the same request is sent
    once more without them: if that one is taken, the images were the trouble and ImagesRefused is
    raised (the reply to the probe is not used: the user is told in one line, and the conversation
    leaves images out from then on); if it is rejected too, the first rejection stands.
    """

    def __init__(self, model: ChatModel, load: ImageLoader) -> None:
        self._model = model
        self._load = load

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Ask with the request's images; see the class docstring for a refusal."""
        images = await self._load(request.messages)
        if not images:
            return await self._model.complete(request)
        try:
            return await self._model.complete(dataclasses.replace(request, images=images))
        except LLMRejected as exc:
            if exc.status != 400:
                raise
            rejected = exc
        try:
            # The probe streams nowhere: its answer is never shown.
            await self._model.complete(dataclasses.replace(request, on_delta=None))
        except LLMError:
            raise rejected from None
        log.warning("model_refuses_images", status=rejected.status, images=len(images))
        raise ImagesRefused(str(rejected), status=rejected.status) from rejected

    async def aclose(self) -> None:
        """Nothing to close: the wrapped model belongs to the system."""
