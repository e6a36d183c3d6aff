"""The HTTP backends against a real local server speaking each API."""

from __future__ import annotations

import pytest

from cfm_server.ai.backends import BackendError, OpenAIChatBackend, WorkersAIBackend
from tests.ai.llm_stub import LLMStub
from tests.ports import free_port

MESSAGES = [
    {"role": "system", "content": "You are Jay."},
    {"role": "user", "content": "sup dude"},
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_openai_compatible_reply(llm: LLMStub, stream: bool) -> None:
    backend = OpenAIChatBackend(llm.openai_url, "llama3.2", api_key="sk-test", stream=stream)
    try:
        text = await backend.complete(MESSAGES)
    finally:
        await backend.aclose()
    assert text == "stub reply 1 to: sup dude"
    (call,) = llm.calls
    assert call.path == "/v1/chat/completions"
    assert call.headers["Authorization"] == "Bearer sk-test"
    assert call.body["model"] == "llama3.2"
    assert call.body["stream"] is stream
    assert call.body["messages"] == MESSAGES


async def test_openai_without_a_key_sends_no_authorization(llm: LLMStub) -> None:
    backend = OpenAIChatBackend(llm.openai_url + "/", "m")
    try:
        await backend.complete(MESSAGES)
    finally:
        await backend.aclose()
    assert "Authorization" not in llm.calls[0].headers


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_openai_server_error_is_a_backend_error(llm: LLMStub, stream: bool) -> None:
    llm.mode = "error"
    backend = OpenAIChatBackend(llm.openai_url, "m", stream=stream)
    try:
        with pytest.raises(BackendError, match="HTTP 500"):
            await backend.complete(MESSAGES)
    finally:
        await backend.aclose()


async def test_wrong_path_is_a_backend_error(llm: LLMStub) -> None:
    backend = OpenAIChatBackend(f"http://127.0.0.1:{llm.port}/nope", "m")
    try:
        with pytest.raises(BackendError, match="HTTP 404"):
            await backend.complete(MESSAGES)
    finally:
        await backend.aclose()


async def test_nobody_listening_is_a_backend_error(llm: LLMStub) -> None:
    port = free_port()  # nothing listens there
    backend = OpenAIChatBackend(f"http://127.0.0.1:{port}/v1", "m", timeout=2)
    try:
        with pytest.raises(BackendError, match="ConnectError"):
            await backend.complete(MESSAGES)
    finally:
        await backend.aclose()


async def test_workers_ai_reply(llm: LLMStub) -> None:
    backend = WorkersAIBackend("acc123", "cf-token", model="@cf/meta/llama-3.2-3b-instruct",
                               base_url=llm.workers_url)
    try:
        text = await backend.complete(MESSAGES)
    finally:
        await backend.aclose()
    assert text == "stub reply 1 to: sup dude"
    (call,) = llm.calls
    assert call.path == "/client/v4/accounts/acc123/ai/run/@cf/meta/llama-3.2-3b-instruct"
    assert call.headers["Authorization"] == "Bearer cf-token"
    assert call.body["messages"] == MESSAGES


async def test_workers_ai_error(llm: LLMStub) -> None:
    llm.mode = "error"
    backend = WorkersAIBackend("acc", "key", base_url=llm.workers_url)
    try:
        with pytest.raises(BackendError):
            await backend.complete(MESSAGES)
    finally:
        await backend.aclose()
