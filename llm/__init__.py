"""Chat models (OpenAI-compatible, Anthropic) behind one small interface, and the turn loop around them.

Importing this package never imports a provider SDK: `build_chat_model` imports the configured one.
"""

from llm.base import (
    ChatModel,
    DeltaCallback,
    Image,
    LLMError,
    LLMRejected,
    LLMUnavailable,
    Message,
    ModelReply,
    RecordSink,
    Toolbox,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from llm.context import estimate_tokens, trim_history
from llm.factory import build_chat_model, load_system_prompt
from llm.retry import RetryingChatModel
from llm.toolbox import EmptyToolbox
from llm.turn import STEP_LIMIT_TEXT, TurnResult, run_turn

__all__ = [
    "STEP_LIMIT_TEXT",
    "ChatModel",
    "DeltaCallback",
    "EmptyToolbox",
    "Image",
    "LLMError",
    "LLMRejected",
    "LLMUnavailable",
    "Message",
    "ModelReply",
    "RecordSink",
    "RetryingChatModel",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "Toolbox",
    "TurnResult",
    "build_chat_model",
    "estimate_tokens",
    "load_system_prompt",
    "run_turn",
    "trim_history",
]
