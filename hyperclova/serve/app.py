"""The HTTP side: FastAPI routes, API keys, body-size limit, errors in OpenAI's shape, metrics.

Routes (docs/serve.md): the Studio playground at `/`; `/v1/completions`, `/v1/chat/completions`
(streaming as server-sent events in OpenAI's chunk format, ending with `data: [DONE]`),
`/v1/models`, `/v1/tokenize`, `/v1/detokenize`; `/tokenize`, `/detokenize` and `/tokenizer_info`
as vLLM names them (lm-evaluation-harness's remote tokenizer uses these); `/health`, `/metrics`.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hyperclova.serve.protocol import (ApiError, ChatRequest, CompletionRequest, DetokenizeRequest,
                                       TokenizeRequest)
from hyperclova.serve.server import Server
from hyperclova.serve.text import token_pieces, token_text

STUDIO_DIR = Path(__file__).parent / "studio"
log = logging.getLogger("hyperclova.serve")
# Paths that need the API key when keys are configured (the page, health and metrics do not).
PROTECTED_PREFIXES = ("/v1/", "/tokenize", "/detokenize", "/tokenizer_info")
KNOWN_PATHS = ("/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions",
               "/v1/tokenize", "/v1/detokenize", "/tokenize", "/detokenize", "/tokenizer_info",
               "/studio/config")


class BodyTooLarge(Exception):
    pass


def _error_response(e: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


class Guard:
    """ASGI middleware: counts requests by endpoint and status, checks the API key, and stops
    bodies over the size limit (by Content-Length, or while they stream in)."""

    def __init__(self, app, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in KNOWN_PATHS else ("/static" if path.startswith("/static/") else "other")
        status = {"code": 500}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            err = self._check(scope, path)
            if err is not None:
                await _error_response(err)(scope, receive, send_counted)
                return
            limit, seen = self.server.limits.max_body_bytes, {"n": 0}

            async def receive_limited():
                message = await receive()
                if message["type"] == "http.request":
                    seen["n"] += len(message.get("body", b""))
                    if seen["n"] > limit:
                        raise BodyTooLarge()
                return message

            await self.app(scope, receive_limited, send_counted)
        finally:
            if self.server.metrics is not None:
                self.server.metrics.requests.labels(endpoint, str(status["code"])).inc()

    def _check(self, scope, path: str) -> ApiError | None:
        headers = dict(scope["headers"])
        if self.server.api_keys and path.startswith(PROTECTED_PREFIXES):
            auth = headers.get(b"authorization", b"").decode("latin-1")
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not any(hmac.compare_digest(token.encode(), k.encode()) for k in self.server.api_keys):
                return ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
                                None, "invalid_api_key")
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.server.limits.max_body_bytes:
            return ApiError(413, f"The request body has {int(length)} bytes; the limit is "
                                 f"{self.server.limits.max_body_bytes}", None, "body_too_large")
        return None


async def _parse(request: Request, model: type[BaseModel]):
    try:
        raw = await request.body()
    except BodyTooLarge:
        limit = request.app.state.server.limits.max_body_bytes
        raise ApiError(413, f"The request body is over the limit of {limit} bytes", None,
                       "body_too_large") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"The body is not valid JSON: {e}", None, "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object", None, "invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        # A union adds the name of each type it tried to the location ("prompt.list[int].0").
        parts = [str(x) for x in err["loc"] if not (isinstance(x, str) and (x in _TYPE_TAGS or "[" in x))]
        field = parts[0] if parts else None
        where = ".".join(parts) or "body"
        raise ApiError(400, f"Invalid value for '{where}': {err['msg']}", field, "invalid_type") from None


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "function-after", "literal"}


class _EventStream(StreamingResponse):
    """Server-sent events that cancel their sequences as soon as the client disconnects.

    Starlette notices the disconnect in a sibling task and cancels the streaming task, but a task
    that the engine wakes at every iteration is rarely idle when that cancellation is attempted;
    cancelling the sequences first stops the wake-ups, and the stream ends at once."""

    def __init__(self, server: Server, prep):
        self._cancel = lambda: prep.variant.engine.cancel(prep.seqs)

        async def frames():
            try:
                async for chunk in server.stream(prep):
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                self._cancel()

        super().__init__(frames(), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def listen_for_disconnect(self, receive) -> None:
        await super().listen_for_disconnect(receive)
        self._cancel()


def create_app(server: Server) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app):
        tasks = [asyncio.create_task(e.serve_forever()) for e in server.engines()]
        yield
        for engine in server.engines():
            engine.close()
        await asyncio.gather(*tasks)

    app = FastAPI(title="hyperclova", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = server
    app.add_middleware(Guard, server=server)

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return _error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return _error_response(ApiError(e.status_code, f"{request.method} {request.url.path}: {e.detail}",
                                        None, code))

    @app.exception_handler(Exception)
    async def server_error(request, e: Exception):
        log.exception("request failed")
        return _error_response(ApiError(500, f"internal error: {type(e).__name__}", None, "internal_error"))

    @app.get("/", include_in_schema=False)
    async def studio():
        return FileResponse(STUDIO_DIR / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STUDIO_DIR), name="static")

    @app.get("/health")
    async def health():
        es = server.engines()  # totals over the base model's engine and the adapters' own
        return {"status": "ok", "model": server.model_name, "engines": len(es),
                "running": sum(e.batch_size for e in es), "queued": sum(e.queue_length for e in es),
                "iterations": sum(e.iterations for e in es), "cancelled": sum(e.cancelled for e in es),
                "peak_batch": max(e.peak_batch for e in es)}

    @app.get("/metrics")
    async def metrics():
        return Response(server.metrics.render(), media_type=server.metrics.content_type)

    def model_card(v) -> dict:
        card = {"id": v.name, "object": "model", "created": 0, "owned_by": "hyperclova",
                "max_model_len": server.max_len}
        if v is not server.base:  # an adapter: what it is and what it is applied to
            card |= {"root": server.model_name, "parent": server.model_name, "adapter": v.kind}
        return card

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card(v) for v in server.variants.values()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str):
        return model_card(server.check_model(name))

    async def respond(request: Request, prep):
        server.submit(prep)
        if prep.body.stream:
            return _EventStream(server, prep)
        return await _until_done_or_gone(request, server, prep)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await respond(request, server.prepare_completion(await _parse(request, CompletionRequest)))

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await respond(request, server.prepare_chat(await _parse(request, ChatRequest)))

    async def tokenize(request: Request):
        body = await _parse(request, TokenizeRequest)
        server.check_model(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise ApiError(400, "give exactly one of 'prompt' or 'messages'", "prompt")
        text = body.prompt if body.prompt is not None else server.chat.render(
            [m.model_dump(exclude_none=True) for m in body.messages])
        ids = server.tok.encode(text)
        return {"tokens": ids, "count": len(ids), "max_model_len": server.max_len,
                "token_strs": [token_text(server.tok, i) for i in ids],
                "pieces": token_pieces(server.tok, ids)}

    async def detokenize(request: Request):
        body = await _parse(request, DetokenizeRequest)
        server.check_model(body.model)
        bad = [t for t in body.tokens if not 0 <= t < server.tok.vocab_size]
        if bad:
            raise ApiError(400, f"token id {bad[0]} is outside the vocabulary [0, {server.tok.vocab_size})",
                           "tokens")
        return {"prompt": server.tok.decode(body.tokens),
                "token_strs": [token_text(server.tok, i) for i in body.tokens]}

    for path in ("/v1/tokenize", "/tokenize"):
        app.post(path)(tokenize)
    for path in ("/v1/detokenize", "/detokenize"):
        app.post(path)(detokenize)

    @app.get("/tokenizer_info")
    async def tokenizer_info():
        t = server.tok
        names = {i: s for s, i in t.special_tokens.items()}
        return {"tokenizer_class": f"hyperclova:{t.type}", "eos_token": names[t.eod_id],
                "bos_token": None, "pad_token": names[t.pad_id], "unk_token": names[t.unk_id],
                "chat_template": server.chat.source, "model_max_length": server.max_len,
                "vocab_size": t.vocab_size}

    @app.get("/studio/config")
    async def studio_config():
        return {"model": server.model_name, "max_model_len": server.max_len,
                "models": [{"id": v.name, "kind": v.kind} for v in server.variants.values()],
                "limits": {"max_tokens": server.limits.max_tokens, "max_n": server.limits.max_n,
                           "max_logprobs": server.limits.max_logprobs},
                "auth": bool(server.api_keys), "knowledge": server.knowledge is not None,
                "filters": server.filters.describe() if server.filters else None,
                "tokenizer": server.tok.type}

    return app


async def _until_done_or_gone(request: Request, server: Server, prep):
    """The whole response; if the client disconnects first, its sequences are cancelled instead
    of generating for nobody."""
    task = asyncio.ensure_future(server.complete(prep))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                return Response(status_code=499)
    finally:
        if not task.done():
            task.cancel()
            prep.variant.engine.cancel(prep.seqs)
