"""Queueing, cancellation and back-pressure of `mmedge serve`, driven deterministically.

The server is the real app (starlette + uvicorn on a loopback port, real HTTP, real disconnects),
but its pipeline is a stand-in whose generations the test opens and closes: a job announces that it
started, sends one token, then waits until the test opens its gate or the server asks it to stop.
So whether a job is queued, running or finished when a client leaves is decided by the test, never
by how fast this CPU generates (a real model on a fast CPU finished 16 long requests before a 17th
client's timeout, and the old test's verdict flipped). Every wait below polls a condition the test
has made certain, with a deadline only as a failure guard.
"""
from __future__ import annotations

import json
import queue
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from mmedge.runtime.pipeline import GenerationResult, GenerationStats, TokenEvent

httpx = pytest.importorskip("httpx", reason="the serve tests talk HTTP through httpx (the test extra)")
uvicorn = pytest.importorskip("uvicorn", reason="the serve tests run uvicorn (the serve extra)")

GUARD_S = 60  # a deadline for conditions that must become true; never part of a verdict


class GatedPipeline:
    """What GenerationWorker and the app use of a Pipeline, with generations the test controls."""

    def __init__(self):
        self.bundle = SimpleNamespace(root="/bundles/gated")
        self.manifest = SimpleNamespace(media=SimpleNamespace(marker="<image>"),
                                        prompt=SimpleNamespace(first_position=0))
        self.llm = SimpleNamespace(reset=lambda position: self.resets.append(position))
        self.started: queue.Queue[str] = queue.Queue()  # prompts, as their generations begin
        self.ended: dict[str, str] = {}  # prompt -> "done" | "stopped"
        self.resets: list[int] = []
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def gate(self, prompt: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(prompt, threading.Event())

    def format_chat(self, turns):
        return "".join(f"<{role}>{text}" for role, text in turns)

    def generate(self, images, prompt, params, raw_prompt=False, on_token=None, should_stop=None):
        self.started.put(prompt)
        words = [f"{prompt}-{i} " for i in range(params.max_new_tokens)]
        sent = []
        for i, word in enumerate(words):
            if i == 1:  # the first token is out: wait for the test, or for the server to stop us
                gate = self.gate(prompt)
                while not gate.wait(0.005):
                    if should_stop():
                        break
            if should_stop() or not on_token(TokenEvent(token=i, text=word)):
                self.ended[prompt] = "stopped"
                break
            sent.append(word)
        else:
            self.ended[prompt] = "done"
        stats = GenerationStats()
        stats.new_tokens, stats.prompt_positions = len(sent), 3
        return GenerationResult(tokens=list(range(len(sent))), text="".join(sent), stats=stats, prompt_tokens=[1, 2, 3])

    def close(self):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(condition, what: str):
    deadline = time.monotonic() + GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {GUARD_S} s"
        time.sleep(0.005)


@pytest.fixture
def gated():
    """A live server over a GatedPipeline: (pipeline, worker, base URL). max_queue 2."""
    from mmedge.runtime.serve.app import create_app
    from mmedge.runtime.serve.limits import ServeLimits

    pipe = GatedPipeline()
    app = create_app(pipe, ServeLimits(max_queue=2, max_tokens=64, default_max_tokens=64))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _until(lambda: server.started, "the server started")
    yield pipe, app.state.worker, f"http://127.0.0.1:{port}"
    for event in list(pipe._gates.values()):
        event.set()
    server.should_exit = True
    thread.join(timeout=GUARD_S)


def _body(prompt: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": 4, **extra}


def _post_in_thread(base: str, body: dict) -> dict:
    """POST on a thread; the dict gets the response when it comes."""
    box: dict = {}

    def run():
        box["response"] = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=GUARD_S)

    box["thread"] = threading.Thread(target=run, daemon=True)
    box["thread"].start()
    return box


def _raw_post(base: str, body: dict) -> socket.socket:
    """A client that sends its request and can then hang up without reading anything."""
    host, port = base.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def test_a_client_that_leaves_while_queued_is_skipped(gated):
    pipe, worker, base = gated
    first = _post_in_thread(base, _body("first"))
    assert pipe.started.get(timeout=GUARD_S) == "first"  # running, held at its gate
    leaver = _raw_post(base, _body("second"))
    _until(lambda: [j.chat.prompt for j in worker.pending()] == ["second"], "the second request queued")
    job = worker.pending()[0]
    leaver.close()
    _until(job.cancelled.is_set, "the queued job marked cancelled when its client left")
    pipe.gate("first").set()
    first["thread"].join(GUARD_S)
    assert first["response"].status_code == 200
    assert first["response"].json()["choices"][0]["message"]["content"] == "first-0 first-1 first-2 first-3 "
    pipe.gate("third").set()
    third = httpx.post(f"{base}/v1/chat/completions", json=_body("third"), timeout=GUARD_S)
    assert third.status_code == 200 and third.json()["usage"]["completion_tokens"] == 4
    started = [pipe.started.get_nowait() for _ in range(pipe.started.qsize())]
    assert started == ["third"]  # "second" was never generated
    assert worker.counters == {"completed": 2, "cancelled": 1, "failed": 0}
    assert pipe.ended == {"first": "done", "third": "done"}


def test_a_client_that_leaves_mid_stream_stops_its_generation(gated):
    """The stream's first token arrives, the client leaves: the running generation is told to stop
    (it could never finish on its own: its gate stays closed), the KV cache is reset after it, and
    the next request is answered."""
    pipe, worker, base = gated
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=_body("long", stream=True), timeout=GUARD_S) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and "long-0" in line:
                break  # leaving the block closes the connection mid-stream
    _until(lambda: worker.counters["cancelled"] == 1, "the running job cancelled")
    assert pipe.ended == {"long": "stopped"} and worker.counters["completed"] == 0
    assert pipe.resets == [0]  # the KV cache is cleared after a cancelled job too
    pipe.gate("next").set()
    again = httpx.post(f"{base}/v1/chat/completions", json=_body("next"), timeout=GUARD_S)
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == "next-0 next-1 next-2 next-3 "
    assert worker.counters == {"completed": 1, "cancelled": 1, "failed": 0}


def test_a_full_queue_answers_503_and_recovers(gated):
    """max_queue 2: one running, two waiting, the next is refused with 503 server_busy; when the
    gates open all three admitted requests are answered, in order."""
    pipe, worker, base = gated
    boxes = [_post_in_thread(base, _body("a"))]
    assert pipe.started.get(timeout=GUARD_S) == "a"
    for name in ("b", "c"):
        boxes.append(_post_in_thread(base, _body(name)))
        _until(lambda name=name: name in [j.chat.prompt for j in worker.pending()], f"{name} queued")
    refused = httpx.post(f"{base}/v1/chat/completions", json=_body("d"), timeout=GUARD_S)
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "server_busy"
    for name in ("a", "b", "c"):
        pipe.gate(name).set()
    for box in boxes:
        box["thread"].join(GUARD_S)
    assert [b["response"].status_code for b in boxes] == [200, 200, 200]
    assert [pipe.started.get_nowait() for _ in range(pipe.started.qsize())] == ["b", "c"]
    assert worker.counters == {"completed": 3, "cancelled": 0, "failed": 0} and "d" not in pipe.ended
