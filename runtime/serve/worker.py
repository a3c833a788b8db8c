"""The generation worker: one thread owns the Pipeline and answers jobs first come, first served.

llama.cpp and onnxruntime release the GIL while they compute, so the server's event loop keeps
accepting and streaming while a generation runs. Each job streams its events (`token`s, then one
of `done`, `error`, `cancelled`) to its request's asyncio queue. A job whose client went away is
cancelled: skipped if still queued, stopped before its next llama_decode call if running (prefill
batches included). After every job the KV cache is cleared, so a cancelled generation leaves
nothing behind for the next request.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from dataclasses import dataclass, field

from mmedge.errors import MmedgeError

from ..pipeline import Pipeline, TokenEvent
from .chat_request import ChatJob, RequestRefused

log = logging.getLogger("mmedge.serve")
_ids = itertools.count(1)


@dataclass
class Job:
    chat: ChatJob
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    id: int = field(default_factory=lambda: next(_ids))

    def emit(self, kind: str, value) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


class GenerationWorker:
    def __init__(self, pipeline: Pipeline, max_queue: int):
        self.pipeline = pipeline
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="mmedge-generation", daemon=True)
        self.counters = {"completed": 0, "cancelled": 0, "failed": 0}
        self.busy = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def pending(self) -> list[Job]:
        """The jobs waiting, first to run first (a snapshot)."""
        with self._queue.mutex:
            return [job for job in self._queue.queue if job is not None]

    def submit(self, job: Job) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise RequestRefused(503, f"the server is busy ({self._queue.maxsize} requests waiting); retry later",
                                 kind="server_busy") from None

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if job.cancelled.is_set():
                self.counters["cancelled"] += 1
                job.emit("cancelled", None)  # ends the request's wait (its client is gone)
                continue
            self.busy = True
            try:
                self._generate(job)
            finally:
                self.busy = False
                self.pipeline.llm.reset(self.pipeline.manifest.prompt.first_position)

    def _generate(self, job: Job) -> None:
        def on_token(event: TokenEvent) -> bool:
            if job.cancelled.is_set():
                return False
            if event.text:
                job.emit("token", event.text)
            return True

        chat = job.chat
        try:
            # A conversation goes through the chat template here; a single message is formatted by
            # generate, exactly as the CLI's prompt is.
            prompt = self.pipeline.format_chat(chat.turns) if chat.is_conversation else chat.prompt
            result = self.pipeline.generate(chat.images, prompt, chat.params, raw_prompt=chat.is_conversation,
                                            on_token=on_token, should_stop=job.cancelled.is_set)
        except MmedgeError as e:  # the request's own fault (a prompt too long for the context, ...)
            self.counters["failed"] += 1
            job.emit("error", RequestRefused(400, str(e)))
            return
        except Exception as e:  # a bug: logged, and the client gets a 500 instead of a hang
            log.exception("generation failed")
            self.counters["failed"] += 1
            job.emit("error", RequestRefused(500, f"internal error: {type(e).__name__}", kind="server_error"))
            return
        if job.cancelled.is_set():
            self.counters["cancelled"] += 1
            job.emit("cancelled", None)
            return
        self.counters["completed"] += 1
        job.emit("done", result)
