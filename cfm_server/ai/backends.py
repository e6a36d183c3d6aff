"""Chat backends over HTTP (httpx, async): OpenAI-compatible servers and Workers AI.

A backend turns a list of chat messages (``{"role", "content"}``) into the reply text,
or raises :class:`BackendError`. It knows nothing of quotas or personas; the guards
wrap every call. One backend (one connection pool) serves every persona of a process.

- :class:`OpenAIChatBackend`: ``POST {base_url}/chat/completions`` — Ollama, llama.cpp's
  server, vLLM, or anything else that speaks it; with ``stream`` the answer is read
  from server-sent events (``data: {...}`` lines up to ``data: [DONE]``).
- :class:`WorkersAIBackend`: Cloudflare's REST API,
  ``POST {base_url}/accounts/{account_id}/ai/run/{model}``; the text is
  ``result.response``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import httpx

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]

OPENAI_DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"  # Ollama's OpenAI-compatible API
OPENAI_DEFAULT_MODEL = "llama3.2"
WORKERS_AI_DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
WORKERS_AI_DEFAULT_MODEL = "@cf/meta/llama-3.2-3b-instruct"
# Error bodies are logged, but never whole: they may be huge HTML pages.
_MAX_ERROR_BODY = 300


class BackendError(Exception):
    """The backend did not give a usable reply (network, HTTP status, shape, empty)."""


class ChatBackend(Protocol):
    name: str

    async def complete(self, messages: Messages) -> str: ...

    async def aclose(self) -> None: ...


def _http_client(timeout: float, http: httpx.AsyncClient | None) -> httpx.AsyncClient:
    if http is not None:
        return http
    # No environment proxies for a local model server; explicit base URLs only.
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=False)


def _status_error(response: httpx.Response, body: str) -> BackendError:
    return BackendError(f"HTTP {response.status_code}: {body[:_MAX_ERROR_BODY]!r}")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise BackendError(f"not JSON: {response.text[:_MAX_ERROR_BODY]!r}") from exc


def _non_empty(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise BackendError("the backend answered with no text")
    return text.strip()


class OpenAIChatBackend:
    name = "openai"

    def __init__(self, base_url: str = OPENAI_DEFAULT_BASE_URL,
                 model: str = OPENAI_DEFAULT_MODEL, *, api_key: str | None = None,
                 stream: bool = False, timeout: float = 20.0, max_tokens: int = 256,
                 temperature: float = 0.8, http: httpx.AsyncClient | None = None) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.stream = stream
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = _http_client(timeout, http)

    async def complete(self, messages: Messages) -> str:
        body = {
            "model": self.model,
            "messages": messages,
            "stream": self.stream,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        try:
            if self.stream:
                return await self._complete_streaming(body)
            response = await self._http.post(self.url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise _status_error(response, response.text)
        data = _json(response)
        try:
            return _non_empty(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"unexpected reply shape: {str(data)[:_MAX_ERROR_BODY]}") from exc

    async def _complete_streaming(self, body: dict[str, Any]) -> str:
        parts: list[str] = []
        async with self._http.stream("POST", self.url, json=body,
                                     headers=self._headers) as response:
            if response.status_code != 200:
                raw = await response.aread()
                raise _status_error(response, raw.decode("utf-8", "replace"))
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, event: lines
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                parts.append(_delta_text(data))
        return _non_empty("".join(parts))

    async def aclose(self) -> None:
        await self._http.aclose()


def _delta_text(data: str) -> str:
    try:
        chunk = json.loads(data)
        choices = chunk.get("choices") or []
        if not choices:
            return ""  # e.g. a final usage-only chunk
        return (choices[0].get("delta") or {}).get("content") or ""
    except (ValueError, AttributeError) as exc:
        raise BackendError(f"bad stream chunk: {data[:_MAX_ERROR_BODY]!r}") from exc


class WorkersAIBackend:
    name = "workers-ai"

    def __init__(self, account_id: str, api_key: str, *,
                 model: str = WORKERS_AI_DEFAULT_MODEL,
                 base_url: str = WORKERS_AI_DEFAULT_BASE_URL, timeout: float = 20.0,
                 max_tokens: int = 256, temperature: float = 0.8,
                 http: httpx.AsyncClient | None = None) -> None:
        self.url = f"{base_url.rstrip('/')}/accounts/{account_id}/ai/run/{model}"
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._http = _http_client(timeout, http)

    async def complete(self, messages: Messages) -> str:
        body = {"messages": messages, "max_tokens": self.max_tokens,
                "temperature": self.temperature}
        try:
            response = await self._http.post(self.url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise _status_error(response, response.text)
        data = _json(response)
        if isinstance(data, dict) and data.get("success") is False:
            raise BackendError(f"Workers AI error: {str(data.get('errors'))[:_MAX_ERROR_BODY]}")
        try:
            return _non_empty(data["result"]["response"])
        except (KeyError, TypeError) as exc:
            raise BackendError(f"unexpected reply shape: {str(data)[:_MAX_ERROR_BODY]}") from exc

    async def aclose(self) -> None:
        await self._http.aclose()
