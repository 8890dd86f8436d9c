"""The app as an MCP server: an MCP client (the ``mcp`` package) lists and calls its tools over 127.0.0.1."""

from __future__ import annotations

import ast
import asyncio
import base64
import json

import pytest

from tests.app_server import serve, tiny_recognizer
from tests.clips import make_clip

pytest.importorskip("gradio")
mcp = pytest.importorskip("mcp")
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

TEXT = "I am so happy today"


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    with serve(tiny_recognizer(tiny_checkpoint)) as (_, url):
        assert url.startswith("http://127.0.0.1:")
        yield url


def data_url(path) -> str:
    return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()


async def session_call(url: str, calls: list[tuple[str, dict]]):
    async with streamable_http_client(f"{url}gradio_api/mcp/") as (read, write, _):
        async with mcp.ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            results = [await session.call_tool(name, args) for name, args in calls]
            return tools, results


def payload(result) -> dict:
    assert not result.isError, result.content
    text = next(c.text for c in result.content if getattr(c, "type", "") == "text")
    return ast.literal_eval(text)  # Gradio's MCP text of a gr.JSON output is the dict's repr


def test_tools_are_classify_and_timeline_with_their_docstrings(server):
    tools, _ = asyncio.run(session_call(server, []))
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"classify", "timeline"}
    assert "emotion" in by_name["classify"].description.lower()
    assert set(by_name["classify"].inputSchema["properties"]) == {"file", "transcript", "modalities"}
    assert "comma string" in json.dumps(by_name["classify"].inputSchema)
    assert "over time" in by_name["timeline"].description.lower()


def test_an_mcp_client_classifies_a_clip_and_gets_an_error_for_a_bad_one(server, tmp_path, tiny_checkpoint):
    clip = make_clip(tmp_path / "clip.mp4", seconds=1.0)
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 20)
    _, (good, timeline, wrong) = asyncio.run(session_call(server, [
        ("classify", {"file": data_url(clip), "transcript": TEXT, "modalities": "audio,text"}),
        ("timeline", {"file": data_url(clip), "modalities": ""}),
        ("classify", {"file": data_url(bad), "transcript": TEXT, "modalities": "audio"}),
    ]))
    result = payload(good)
    labels = tiny_recognizer(tiny_checkpoint).labels
    assert result["modalities_used"] == ["audio", "text"] and result["transcript"] == TEXT
    assert {s["label"] for s in result["scores"]} == set(labels) and set(result["per_modality"]) == {"audio", "text"}
    assert set(payload(timeline)) >= {"segments", "summary", "duration"}
    assert wrong.isError and "not a video or audio clip" in json.dumps([c.model_dump() for c in wrong.content])
