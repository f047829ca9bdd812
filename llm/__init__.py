"""Chat models (OpenAI-compatible, Anthropic) behind one small interface, and the turn loop around them.

Importing this package never imports a provider SDK: `build_chat_model` imports the configured one.
"""

from llm.base import (
    ChatModel,
    DeltaCallback,
    LLMError,
    LLMRejected,
    LLMUnavailable,
    ModelReply,
    ModelRequest,
    RecordSink,
    Toolbox,
    ToolResult,
    ToolSpec,
)
from llm.context import estimate_tokens, trim_history
from llm.factory import build_chat_model, load_system_prompt
from llm.record_json import RecordError, decode_history, record_from_json, record_to_json
from llm.records import (
    AssistantRecord,
    Attachment,
    DeliveredRecord,
    Image,
    Marker,
    ModelMessage,
    NoticeRecord,
    PreviewRecord,
    Record,
    ReminderFiredRecord,
    ReplyTarget,
    ResetRecord,
    SummaryRecord,
    ToolCall,
    ToolResultRecord,
    TurnRecord,
    Usage,
    UserRecord,
)
from llm.retry import RetryingChatModel
from llm.toolbox import EmptyToolbox
from llm.turn import STEP_LIMIT_TEXT, TurnContext, TurnResult, TurnTimedOut, run_turn

__all__ = [
    "STEP_LIMIT_TEXT",
    "AssistantRecord",
    "Attachment",
    "ChatModel",
    "DeliveredRecord",
    "DeltaCallback",
    "EmptyToolbox",
    "Image",
    "LLMError",
    "LLMRejected",
    "LLMUnavailable",
    "Marker",
    "ModelMessage",
    "ModelReply",
    "ModelRequest",
    "NoticeRecord",
    "PreviewRecord",
    "Record",
    "RecordError",
    "RecordSink",
    "ReminderFiredRecord",
    "ReplyTarget",
    "ResetRecord",
    "RetryingChatModel",
    "SummaryRecord",
    "ToolCall",
    "ToolResult",
    "ToolResultRecord",
    "ToolSpec",
    "Toolbox",
    "TurnContext",
    "TurnRecord",
    "TurnResult",
    "TurnTimedOut",
    "Usage",
    "UserRecord",
    "build_chat_model",
    "decode_history",
    "estimate_tokens",
    "load_system_prompt",
    "record_from_json",
    "record_to_json",
    "run_turn",
    "trim_history",
]
