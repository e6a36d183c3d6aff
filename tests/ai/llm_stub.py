"""A real HTTP server on 127.0.0.1 that plays an LLM API, for the AI backend tests.

It speaks both shapes the AI contacts use:

- OpenAI-compatible ``POST /v1/chat/completions``, plain JSON or (``"stream": true``)
  server-sent events ending with ``data: [DONE]``;
- Workers AI ``POST /client/v4/accounts/<account>/ai/run/<model>`` → ``result.response``.

``mode`` decides what the next requests get: ``"ok"``, ``"error"`` (HTTP 500) or
``"hang"`` (no answer until the test ends, to trip the client's timeout). Every request
is recorded (path, headers, JSON body) so tests can count calls and read what was sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class LLMStub:
    mode: str = "ok"
    calls: list[Call] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def workers_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    @staticmethod
    def reply_to(body: dict[str, Any], n: int) -> str:
        """What the stub answers: the call number and the last user message, so tests
        can see their text was relayed (and which call produced which reply)."""
        last = body["messages"][-1]["content"]
        return f"stub reply {n} to: {last}"


def _handler(stub: LLMStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            stub.calls.append(Call(self.path, dict(self.headers), body))
            n = len(stub.calls)
            if stub.mode == "hang":
                stub.release.wait(30)
                return self._send(503, {"error": "released"})
            if stub.mode == "error":
                return self._send(500, {"error": {"message": "model exploded"}})
            text = stub.reply_to(body, n)
            if "/ai/run/" in self.path:
                return self._send(200, {"result": {"response": text}, "success": True,
                                        "errors": [], "messages": []})
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": "no such path"})
            if body.get("stream"):
                return self._stream(text)
            return self._send(200, {
                "id": "chatcmpl-1", "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
            })

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, text: str) -> None:
            # Split the answer over several chunks, with the noise real servers send:
            # a role-only first delta, a comment line, and a usage chunk with no choices.
            words = text.split(" ")
            chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunks.append({"choices": [{"index": 0, "delta": {"content": piece}}]})
            chunks.append({"choices": [], "usage": {"total_tokens": 7}})
            lines = [": keep-alive\n\n"] + [f"data: {json.dumps(c)}\n\n" for c in chunks]
            lines.append("data: [DONE]\n\n")
            payload = "".join(lines).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class StubServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has hung up on a "hang" request: expected, not news.
        pass


def start_stub() -> tuple[LLMStub, StubServer, threading.Thread]:
    stub = LLMStub()
    server = StubServer(("127.0.0.1", 0), _handler(stub))
    stub.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    return stub, server, thread
