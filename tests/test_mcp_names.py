"""Tool names for the model, result conversion, and the toolbox's routing (no servers needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mcp_types as types
from hypothesis import given
from hypothesis import strategies as st

from llm.base import Image, ToolResult
from tools import NAME_PATTERN, McpTool, McpToolbox, assign_names
from tools._convert import MAX_RESULT_CHARS, convert_result, object_schema

names = st.text(min_size=0, max_size=80)
pairs = st.lists(st.tuples(names, names), max_size=30)


@given(pairs)
def test_every_name_is_valid_for_both_providers_unique_and_maps_back(given_pairs: list[tuple[str, str]]) -> None:
    assigned = assign_names(given_pairs)
    assert set(assigned.values()) == set(given_pairs)
    assert len(assigned) == len(set(given_pairs))
    for name in assigned:
        assert NAME_PATTERN.fullmatch(name), name


@given(pairs, st.tuples(names, names))
def test_a_name_depends_only_on_its_own_tool_and_whether_it_clashes(
    given_pairs: list[tuple[str, str]], extra: tuple[str, str]
) -> None:
    before = {pair: name for name, pair in assign_names(given_pairs).items()}
    after = {pair: name for name, pair in assign_names([extra, *reversed(given_pairs)]).items()}
    for pair, name in before.items():
        if after[pair] != name:
            # Only a new clash may rename a tool: the extra one has the same plain name.
            assert next(iter(assign_names([pair]))) == next(iter(assign_names([extra])))


def test_plain_names_are_server_double_underscore_tool() -> None:
    assert assign_names([("time", "get_current_time")]) == {"time__get_current_time": ("time", "get_current_time")}


def test_invalid_characters_become_underscores_and_clashes_get_distinct_suffixes() -> None:
    assigned = assign_names([("web search", "find.page"), ("web_search", "find_page")])
    assert len(assigned) == 2
    assert all(name.startswith("web_search__find_page_") for name in assigned)


def test_long_names_are_cut_to_64_characters() -> None:
    (name,) = assign_names([("s" * 40, "t" * 40)])
    assert len(name) == 64
    assert NAME_PATTERN.fullmatch(name)


def test_schemas_are_object_schemas() -> None:
    assert object_schema(None) == {"type": "object", "properties": {}}
    assert object_schema({}) == {"type": "object", "properties": {}}
    assert object_schema({"type": "string"}) == {"type": "object", "properties": {}}
    assert object_schema({"type": "object"}) == {"type": "object", "properties": {}}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert object_schema(schema) == schema


def test_text_is_joined_images_kept_and_errors_preserved() -> None:
    result = types.CallToolResult(
        content=[
            types.TextContent(text="one"),
            types.ImageContent(data="AAAA", mime_type="image/png"),
            types.TextContent(text="two"),
        ],
        is_error=True,
    )
    assert convert_result(result) == ToolResult("one\ntwo", is_error=True, images=(Image("image/png", "AAAA"),))


def test_resources_and_structured_content_are_rendered_as_text() -> None:
    embedded = types.EmbeddedResource(resource=types.TextResourceContents(uri="memo://1", text="body"))
    assert convert_result(types.CallToolResult(content=[embedded])).content == "[resource memo://1]\nbody"
    blob = types.EmbeddedResource(resource=types.BlobResourceContents(uri="f://x", blob="AAAA", mime_type="app/x"))
    assert (
        convert_result(types.CallToolResult(content=[blob])).content
        == "[resource f://x: app/x, about 3 bytes, not shown]"
    )
    structured = types.CallToolResult(content=[], structured_content={"temp": 21})
    assert convert_result(structured).content == '{"temp": 21}'
    both = types.CallToolResult(content=[types.TextContent(text="21 degrees")], structured_content={"temp": 21})
    assert convert_result(both).content == "21 degrees"


def test_image_only_results_and_empty_errors_still_say_something() -> None:
    image = types.CallToolResult(content=[types.ImageContent(data="AAAA", mime_type="image/png")])
    assert convert_result(image).content == "[1 image]"
    assert convert_result(types.CallToolResult(content=[], is_error=True)).content


def test_a_runaway_result_is_cut() -> None:
    huge = types.CallToolResult(content=[types.TextContent(text="x" * (MAX_RESULT_CHARS + 10))])
    content = convert_result(huge).content
    assert content.startswith("x" * 100)
    assert content.endswith(f"[cut: the tool answered {MAX_RESULT_CHARS + 10} characters]")


class FakeSource:
    """A tool source as the toolbox sees one: a list of tools and a record of calls."""

    def __init__(self, tools: Sequence[str]) -> None:
        self.listed = [McpTool(name, f"does {name}", {"type": "object", "properties": {}}) for name in tools]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def tools(self) -> Sequence[McpTool]:
        return self.listed

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        self.calls.append((name, dict(arguments)))
        return ToolResult(f"{name} done")


async def test_the_toolbox_routes_each_name_to_its_server_and_tool() -> None:
    search, mail = FakeSource(["search", "fetch.page"]), FakeSource(["search"])
    toolbox = McpToolbox({"web": search, "mail box": mail})
    assert [spec.name for spec in toolbox.specs()] == ["mail_box__search", "web__fetch_page", "web__search"]
    assert await toolbox.call("web__fetch_page", {"url": "u"}) == ToolResult("fetch.page done")
    assert await toolbox.call("mail_box__search", {}) == ToolResult("search done")
    assert search.calls == [("fetch.page", {"url": "u"})]
    assert mail.calls == [("search", {})]


async def test_an_unknown_or_vanished_tool_is_an_error_result() -> None:
    source = FakeSource(["a"])
    toolbox = McpToolbox({"s": source})
    result = await toolbox.call("s__b", {})
    assert result.is_error
    assert "s__b" in result.content
    source.listed = []
    assert toolbox.specs() == []
    assert (await toolbox.call("s__a", {})).is_error
    assert source.calls == []
