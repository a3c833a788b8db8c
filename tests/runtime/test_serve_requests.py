"""Parsing an OpenAI chat request into a job, without a server: images placed where they stand,
sampling fields mapped, everything unsupported refused by name (never silently ignored)."""
from __future__ import annotations

import base64
import io

import pytest

from mmedge.errors import ServeError
from mmedge.runtime.serve.chat_request import RequestRefused, parse_chat_request
from mmedge.runtime.serve.limits import ServeLimits

MARKER = "<image>"


def _uri(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _parse(body, **limits):
    return parse_chat_request(body, ServeLimits(**limits), MARKER, "m")


def test_images_go_where_they_stand_and_sampling_is_mapped(photos):
    uri = _uri(photos["coffee"])
    job = _parse({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare "}, {"type": "image_url", "image_url": {"url": uri}},
        {"type": "text", "text": " and "}, {"type": "image_url", "image_url": uri}, {"type": "text", "text": "."}]}],
        "max_completion_tokens": 9, "temperature": 0.5, "top_p": 0.8, "top_k": 5, "seed": 3, "stream": True,
        "model": "m", "n": 1, "stop": None, "presence_penalty": 0})
    assert job.prompt == "Compare <image> and <image>." and len(job.images) == 2
    assert job.images[0].size == photos["coffee"].size and job.images[0].mode == "RGB"
    s = job.params.sampling
    assert (job.params.max_new_tokens, s.temperature, s.top_p, s.top_k, s.seed, job.stream) == (9, 0.5, 0.8, 5, 3, True)


def test_a_conversation_keeps_its_turns_and_counts_images_across_them(photos):
    uri = _uri(photos["coffee"])
    image = {"type": "image_url", "image_url": {"url": uri}}
    job = _parse({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": "A cup."},
        {"role": "user", "content": [{"type": "text", "text": "And this? "}, image]}]})
    assert job.is_conversation and len(job.images) == 2
    assert job.turns == [("system", "Be brief."), ("user", "<image>What is this?"), ("assistant", "A cup."),
                         ("user", "And this? <image>")]
    assert job.prompt == "And this? <image>"
    with pytest.raises(RequestRefused, match="more than 1 images"):  # the limit spans the conversation
        _parse({"messages": [{"role": "user", "content": [image]}, {"role": "assistant", "content": "ok"},
                             {"role": "user", "content": [image]}]}, max_images=1)


def test_defaults_follow_openai_and_the_server_limits():
    job = _parse({"messages": [{"role": "user", "content": "Hi"}]}, default_max_tokens=77)
    assert job.prompt == "Hi" and job.images == [] and job.stream is False and not job.is_conversation
    assert job.params.max_new_tokens == 77 and job.params.sampling.temperature == 1.0 and job.params.sampling.seed == 0


@pytest.mark.parametrize("body, status, text", [
    ([], 400, "JSON object"),
    ({"messages": "hi"}, 400, "non-empty list"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, 400, "the last message must be the user's"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}, 400,
     "the last message must be the user's"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "s"}, {"role": "user", "content": "x"}]},
     400, "a system message may only come first"),
    ({"messages": [{"role": "tool", "content": "x"}, {"role": "user", "content": "x"}]}, 400, "needs a role among"),
    ({"messages": ["hi"]}, 400, "needs a role among"),
    ({"messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]},
                   {"role": "user", "content": "x"}]}, 400, "images may only come in user messages"),
    ({"messages": [{"role": "system", "content": "an <image> here"}, {"role": "user", "content": "x"}]}, 400, "image marker"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "string or a non-empty list"),
    ({"messages": [{"role": "user", "content": []}]}, 400, "string or a non-empty list"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "needs `image_url.url`"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}, 400, "each content part"),
    ({"messages": [{"role": "user", "content": "an <image> here"}]}, 400, "image marker"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{}]}, 400, "`tools` is not supported"),
    ({"messages": [{"role": "user", "content": "x"}], "logprobs": True}, 400, "`logprobs` is not supported"),
    ({"messages": [{"role": "user", "content": "x"}], "top_k": 1.5}, 400, "`top_k` must be an integer"),
    ({"messages": [{"role": "user", "content": "x"}], "seed": True}, 400, "`seed` must be an integer"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 400, "`temperature` must be a number"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2000}, 400, "max_tokens must be in 1 .. 1024"),
    ({"messages": [{"role": "user", "content": "x"}], "model": "other"}, 404, "not served here"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}]}]},
     400, "data:image/<type>;base64"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.org/a.png"}}]}]},
     400, "fetches nothing from the network"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]},
     403, "local files are not served"),
])
def test_refusals(body, status, text):
    with pytest.raises(RequestRefused) as info:
        _parse(body)
    assert info.value.status == status and text in info.value.message


def test_limits_are_checked():
    with pytest.raises(ServeError, match="max_images must be in 0 .. 256"):
        ServeLimits(max_images=1000)
    with pytest.raises(ServeError, match="default_max_tokens .* exceeds"):
        ServeLimits(max_tokens=10, default_max_tokens=20)


def test_a_bundle_without_a_chat_template_takes_single_messages_only():
    from mmedge.errors import PromptError
    from mmedge.manifest import PromptSpec
    from mmedge.runtime.prompt import format_chat

    with pytest.raises(PromptError, match="no chat template, so it takes one user message"):
        format_chat([("system", "s"), ("user", "x")], PromptSpec(chat_template=None))
