"""What the model gets of the files users sent: image parts in each provider's shape, documents' text
with their names, images counted by each provider's token formula, and answers made speakable."""

from __future__ import annotations

import base64

from llm.anthropic_provider import to_anthropic_messages
from llm.attachments import IMAGE_NOT_SHOWN, user_text
from llm.context import anthropic_image_tokens, estimate_tokens, openai_image_tokens, trim_history
from llm.openai_provider import to_openai_messages
from llm.records import AssistantRecord, Attachment, Image, UserRecord
from llm.spoken import CODE_LEFT_OUT, SPEECH_INPUT_LIMIT, spoken_parts
from tests.fakes import media
from tests.fakes._llm_images import check_anthropic, check_openai
from tests.fakes._llm_tokens import anthropic_image_tokens as fake_anthropic_tokens
from tests.fakes._llm_tokens import openai_image_tokens as fake_openai_tokens

PHOTO = Attachment("photo", "photo-1", "image/jpeg", 1000, width=64, height=48)
PNG = Image("image/png", base64.b64encode(media.png(64, 48)).decode())
REPORT = Attachment("document", "doc-1", "application/pdf", 900, "report.pdf", "Revenue grew.")


def test_openai_gets_image_url_parts_and_the_caption() -> None:
    record = UserRecord(text="what is this?", attachments=(PHOTO,))
    [message] = to_openai_messages("", [record], {"photo-1": PNG})
    assert message["content"][0] == {"type": "text", "text": "what is this?"}
    assert message["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    [image] = check_openai([message])  # as OpenAI checks it
    assert (image.width, image.height) == (64, 48)


def test_anthropic_gets_image_blocks_before_the_caption() -> None:
    record = UserRecord(text="what is this?", attachments=(PHOTO,))
    [message] = to_anthropic_messages([record], {"photo-1": PNG})
    assert [block["type"] for block in message["content"]] == ["image", "text"]
    [image] = check_anthropic([message])
    assert image.media_type == "image/png"


def test_an_image_whose_bytes_the_request_lacks_is_a_note() -> None:
    record = UserRecord(text="and this?", attachments=(PHOTO,))
    [message] = to_openai_messages("", [record])
    assert message["content"] == f"{IMAGE_NOT_SHOWN}\n\nand this?"
    [blocks] = to_anthropic_messages([record])
    assert blocks["content"] == [{"type": "text", "text": f"{IMAGE_NOT_SHOWN}\n\nand this?"}]


def test_a_document_is_read_with_its_name_after_the_users_words() -> None:
    record = UserRecord(text="summarise", attachments=(REPORT,))
    assert user_text(record) == 'summarise\n\n<document name="report.pdf">\nRevenue grew.\n</document>'
    [message] = to_openai_messages("", [record])
    assert message["content"] == user_text(record)


def test_image_tokens_follow_each_providers_formula() -> None:
    for width, height in ((64, 48), (1280, 960), (1568, 1176), (4000, 3000), (800, 6000)):
        assert anthropic_image_tokens(width, height) == fake_anthropic_tokens(width, height)
        assert openai_image_tokens(width, height) == fake_openai_tokens(width, height, "high")
    record = UserRecord(text="", attachments=(Attachment("photo", "p", width=1280, height=960),))
    assert estimate_tokens(record, openai_image_tokens) == 4 + 765
    assert estimate_tokens(record, anthropic_image_tokens) == 4 + 1534


def test_images_count_against_the_context_budget() -> None:
    photo = UserRecord(text="look", attachments=(Attachment("photo", "p", width=1568, height=1176),))
    history = [photo, AssistantRecord(text="nice"), UserRecord(text="and now?")]
    assert trim_history(history, 1000, "", image_cost=openai_image_tokens) == history
    assert trim_history(history, 1000, "", image_cost=anthropic_image_tokens) == history[2:]


def test_code_is_not_read_aloud_and_markup_is_dropped() -> None:
    answer = "## Result\n\nRun **this**:\n\n```python\nprint('hi')\n```\n\nSee [the docs](https://example.com)."
    assert spoken_parts(answer) == [f"Result\n\nRun this:\n\n{CODE_LEFT_OUT}\n\nSee the docs."]


def test_a_long_answer_is_spoken_in_parts_under_the_input_limit() -> None:
    paragraph = "This sentence is part of a long answer. " * 60
    parts = spoken_parts("\n\n".join([paragraph] * 8), max_parts=10)
    assert len(parts) >= 3
    assert all(0 < len(part) <= SPEECH_INPUT_LIMIT for part in parts)
    assert " ".join(parts).split() == ("\n\n".join([paragraph] * 8)).split()
    one_sentence = "word " * 2000
    assert all(len(part) <= SPEECH_INPUT_LIMIT for part in spoken_parts(one_sentence))
    assert len(spoken_parts("\n\n".join([paragraph] * 8), max_parts=2)) == 2
    assert spoken_parts("```\nonly code\n```") == [CODE_LEFT_OUT]
