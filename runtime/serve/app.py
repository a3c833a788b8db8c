"""The HTTP side of `mmedge serve` (starlette): routes, body limits, JSON and server-sent events.

    GET  /health               -> {"status": "ok", "model", "queued", "busy", "counters", "limits"}
    GET  /v1/models            -> the one model (the bundle's folder name)
    POST /v1/chat/completions  -> OpenAI's chat completion, or with "stream": true its chunks as SSE

Errors are OpenAI-shaped: {"error": {"message", "type", "param", "code"}} with a 4xx/5xx status.
A client that disconnects cancels its job (queued: skipped; running: stopped before its next
llama_decode call, prefill batches included).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

from mmedge.errors import MissingDependencyError

from .chat_request import ChatJob, RequestRefused, parse_chat_request
from .limits import ServeLimits
from .worker import GenerationWorker, Job

DISCONNECT_POLL_S = 0.05
CLIENT_CLOSED = 499  # the answer to a request whose client left (nobody reads it; nginx's code)


def _error(refused: RequestRefused):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": refused.message, "type": refused.kind, "param": refused.param,
                                   "code": refused.status}}, status_code=refused.status)


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestRefused(413, f"the request body is larger than {limit} bytes (images count as base64)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestRefused(413, f"the request body is larger than {limit} bytes (images count as base64)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _watch_disconnect(request, job: Job) -> None:
    while not job.cancelled.is_set():
        if await request.is_disconnected():
            job.cancelled.set()
            return
        await asyncio.sleep(DISCONNECT_POLL_S)


def _completion(job: Job, result, model: str) -> dict:
    stats = result.stats
    finish = "length" if stats.new_tokens >= job.chat.params.max_new_tokens else "stop"
    return {"id": f"chatcmpl-{job.id}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": stats.prompt_positions, "completion_tokens": stats.new_tokens,
                      "total_tokens": stats.prompt_positions + stats.new_tokens}}


def _chunk(job: Job, model: str, delta: dict, finish: str | None = None) -> str:
    body = {"id": f"chatcmpl-{job.id}", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n"


def create_app(pipeline, limits: ServeLimits, model_id: str | None = None):
    """The ASGI app over an open Pipeline; the app owns it from here (closed at shutdown)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    model = model_id or Path(pipeline.bundle.root).name
    marker = pipeline.manifest.media.marker
    worker = GenerationWorker(pipeline, limits.max_queue)

    async def health(request):
        return JSONResponse({"status": "ok", "model": model, "queued": worker.queued, "busy": worker.busy,
                             "counters": dict(worker.counters), "limits": limits.to_dict()})

    async def models(request):
        return JSONResponse({"object": "list", "data": [{"id": model, "object": "model", "created": 0,
                                                         "owned_by": "mmedge"}]})

    async def chat_completions(request):
        try:
            raw = await _read_body(request, limits.max_body_bytes)
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise RequestRefused(400, "the request body is not JSON") from None
            except RecursionError:  # json.loads recurses per nesting level
                raise RequestRefused(400, "the request body's JSON is nested too deeply") from None
            chat: ChatJob = await asyncio.to_thread(parse_chat_request, body, limits, marker, model)
            job = Job(chat=chat, loop=asyncio.get_running_loop())
            worker.submit(job)
        except RequestRefused as refused:
            return _error(refused)
        # Until the answer starts, a disconnect is noticed by polling; once streaming, starlette
        # cancels the stream's generator when the client leaves (its `finally` cancels the job).
        watcher = asyncio.create_task(_watch_disconnect(request, job))
        try:
            kind, value = await job.events.get()
            if kind in ("error", "cancelled"):
                return _error(value) if kind == "error" else Response(status_code=CLIENT_CLOSED)
            if not chat.stream:
                while kind == "token":  # the result carries the whole text
                    kind, value = await job.events.get()
                if kind == "cancelled":
                    return Response(status_code=CLIENT_CLOSED)
                return _error(value) if kind == "error" else JSONResponse(_completion(job, value, model))
        except asyncio.CancelledError:
            job.cancelled.set()
            raise
        finally:
            watcher.cancel()
        return StreamingResponse(_events(job, kind, value), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _events(job: Job, kind, value):
        try:
            yield _chunk(job, model, {"role": "assistant", "content": ""})
            sent = []
            while kind == "token":
                sent.append(value)
                yield _chunk(job, model, {"content": value})
                kind, value = await job.events.get()
            if kind == "cancelled":
                return
            if kind == "done":
                # An incomplete UTF-8 sequence at the very end is flushed into the result's text only
                # (as U+FFFD): send it too, so the streamed text equals the non-streamed one.
                tail = value.text[len("".join(sent)):]
                if tail:
                    yield _chunk(job, model, {"content": tail})
                finish = "length" if value.stats.new_tokens >= job.chat.params.max_new_tokens else "stop"
                yield _chunk(job, model, {}, finish)
            else:  # an error after the first token: the status is sent already; say it in the stream
                yield f"data: {json.dumps({'error': {'message': value.message, 'type': value.kind}})}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # the client left (the task is cancelled) or the stream ended: stop the job either way
            job.cancelled.set()

    async def not_found(request, exc):
        return _error(RequestRefused(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                                     kind="not_found" if exc.status_code == 404 else "invalid_request_error"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker.start()
        try:
            yield
        finally:
            await asyncio.to_thread(worker.stop)
            pipeline.close()

    app = Starlette(routes=[Route("/health", health), Route("/v1/models", models),
                            Route("/v1/chat/completions", chat_completions, methods=["POST"])],
                    exception_handlers={HTTPException: not_found}, lifespan=lifespan)
    app.state.worker = worker
    return app


def serve(bundle: str | Path, limits: ServeLimits, options, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Load the bundle, then serve until interrupted (uvicorn)."""
    try:
        import starlette  # noqa: F401  (create_app's)
        import uvicorn
    except ImportError:
        raise MissingDependencyError("mmedge serve needs starlette and uvicorn; install the serve extra "
                                     "(pip install 'mmedge[serve]')") from None

    from ..pipeline import Pipeline

    pipeline = Pipeline(bundle, options)
    app = create_app(pipeline, limits)
    print(f"mmedge serve: {Path(bundle).name} on http://{host}:{port} (POST /v1/chat/completions)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
