"""An OpenAI chat-completions request body -> a generation job, or a `RequestRefused` with the
HTTP status and a message that says what was expected.

Accepted: `messages` = an optional first `system` message, then `user` and `assistant` turns ending
with the user's (one user message is formatted as the CLI's prompt is; a conversation goes through
the bundle's chat template as a whole, so a bundle without a template takes single messages only);
each `content` a string or a list of `text` and `image_url` parts (images in user turns only), the
images placed where they stand (the bundle's image marker is put there); `image_url.url` a data URI
(`data:image/...;base64,...`) or, when the server has an image root, a `file://` URL or path inside
it. Sampling: `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `top_k`, `seed`;
`stream`. Other OpenAI fields that would change the answer (`n` > 1, `stop`, tools, logprobs,
response formats) are refused rather than ignored.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from mmedge.errors import MmedgeError

from ..images import load_image, load_image_bytes
from ..pipeline import GenerationParams
from ..sampling import SamplingParams
from .limits import ServeLimits

_DATA_URI = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,(?P<payload>.*)$", re.DOTALL)
# Fields that would change the answer and that the server does not implement.
_ROLES = ("system", "user", "assistant")
_REFUSED_FIELDS = ("n", "stop", "tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs",
                   "response_format", "logit_bias", "presence_penalty", "frequency_penalty")
_NEUTRAL_DEFAULTS = {"n": 1, "logprobs": False, "presence_penalty": 0, "frequency_penalty": 0, "stop": None}


class RequestRefused(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


@dataclass
class ChatJob:
    prompt: str  # the last user message's text, the bundle's image marker where each image stood
    images: list
    params: GenerationParams
    stream: bool
    model: str
    # Every turn, the last one included, as (role, text with markers); one turn: a single user
    # message, formatted by the pipeline like a CLI prompt. More: the bundle's chat template renders them.
    turns: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_conversation(self) -> bool:
        return len(self.turns) > 1


def parse_chat_request(body, limits: ServeLimits, marker: str, model_id: str) -> ChatJob:
    if not isinstance(body, dict):
        raise RequestRefused(400, "the request body must be a JSON object with `messages`")
    for name in _REFUSED_FIELDS:
        if name in body and body[name] != _NEUTRAL_DEFAULTS.get(name, object()) and body[name] is not None:
            raise RequestRefused(400, f"`{name}` is not supported by this server; leave it out", name)
    model = body.get("model", model_id)
    if model not in (model_id, None, ""):
        raise RequestRefused(404, f"model {model!r} is not served here; GET /v1/models lists {model_id!r}", "model",
                             "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestRefused(400, "`messages` must be a non-empty list", "messages")
    turns, sources = [], []
    for i, message in enumerate(messages):
        role = _role(message, i, len(messages))
        text, found = _content(message.get("content"), marker, limits, f"messages[{i}].content",
                               images_allowed=role == "user", images_so_far=len(sources))
        turns.append((role, text))
        sources += found
    images = [_image(src, i, limits) for i, src in enumerate(sources)]
    return ChatJob(prompt=turns[-1][1], images=images, params=_params(body, limits), stream=_flag(body, "stream"),
                   model=model_id, turns=turns)


def _role(message, index: int, count: int) -> str:
    """system (first only), user and assistant turns, ending with the user's: what chat templates take."""
    where = f"messages[{index}]"
    role = message.get("role") if isinstance(message, dict) else None
    if role not in _ROLES:
        raise RequestRefused(400, f"each message needs a role among {list(_ROLES)}; found {role!r}", where)
    if role == "system" and index != 0:
        raise RequestRefused(400, "a system message may only come first", where)
    if index == count - 1 and role != "user":
        raise RequestRefused(400, "the last message must be the user's (the one to answer)", where)
    return role


def _content(content, marker: str, limits: ServeLimits, at: str, images_allowed: bool,
             images_so_far: int) -> tuple[str, list[str]]:
    if isinstance(content, str):
        if marker in content:
            raise RequestRefused(400, f"the text holds the image marker {marker!r}; send images as image_url parts", at)
        return content, []
    if not isinstance(content, list) or not content:
        raise RequestRefused(400, "`content` must be a string or a non-empty list of text and image_url parts", at)
    texts, sources = [], []
    for i, part in enumerate(content):
        where = f"{at}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if marker in part["text"]:
                raise RequestRefused(400, f"the text holds the image marker {marker!r}; send images as image_url parts",
                                     where)
            texts.append(part["text"])
        elif kind == "image_url":
            if not images_allowed:
                raise RequestRefused(400, "images may only come in user messages", where)
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str) or not url:
                raise RequestRefused(400, "an image_url part needs `image_url.url`", where)
            sources.append(url)
            texts.append(marker)
        else:
            raise RequestRefused(400, "each content part must be {type: text, text} or {type: image_url, image_url: "
                                 "{url}}", where)
        if images_so_far + len(sources) > limits.max_images:
            raise RequestRefused(400, f"more than {limits.max_images} images in one request", where)
    return "".join(texts), sources


def _image(url: str, index: int, limits: ServeLimits):
    what = f"image {index + 1}"
    match = _DATA_URI.match(url)
    try:
        if match:
            try:
                data = base64.b64decode(match.group("payload"), validate=True)
            except (binascii.Error, ValueError):
                raise RequestRefused(400, f"{what}: the data URI is not valid base64") from None
            return load_image_bytes(data, what)
        if url.startswith("data:"):
            raise RequestRefused(400, f"{what}: data URIs must be `data:image/<type>;base64,...`")
        return load_image(_local_path(url, what, limits))
    except MmedgeError as e:
        raise RequestRefused(400, str(e)) from None


def _local_path(url: str, what: str, limits: ServeLimits) -> Path:
    parsed = urlparse(url)
    if parsed.scheme not in ("", "file") or (parsed.scheme == "file" and parsed.netloc not in ("", "localhost")):
        raise RequestRefused(400, f"{what}: only data URIs{' and local files' if limits.image_root else ''} are "
                             f"accepted; this server fetches nothing from the network")
    if limits.image_root is None:
        raise RequestRefused(403, f"{what}: local files are not served (start the server with --image-root DIR to allow "
                             "files under DIR); send the image as a data URI")
    path = Path(unquote(parsed.path) if parsed.scheme == "file" else url)
    real = (path if path.is_absolute() else limits.image_root / path).resolve()
    if real != limits.image_root and limits.image_root not in real.parents:
        raise RequestRefused(403, f"{what}: {url!r} is outside the server's image root")
    return real


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise RequestRefused(400, f"`{name}` must be true or false", name)
    return value


def _number(body: dict, name: str, kind, default):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise RequestRefused(400, f"`{name}` must be {'a number' if kind is float else 'an integer'}", name)
    return kind(value)


def _params(body: dict, limits: ServeLimits) -> GenerationParams:
    max_tokens = _number(body, "max_completion_tokens", int, None)
    max_tokens = _number(body, "max_tokens", int, max_tokens if max_tokens is not None else limits.default_max_tokens)
    if not 1 <= max_tokens <= limits.max_tokens:
        raise RequestRefused(400, f"max_tokens must be in 1 .. {limits.max_tokens}, got {max_tokens}", "max_tokens")
    try:
        sampling = SamplingParams(temperature=_number(body, "temperature", float, 1.0),
                                  top_p=_number(body, "top_p", float, 1.0), top_k=_number(body, "top_k", int, 0),
                                  seed=_number(body, "seed", int, 0))
        return GenerationParams(max_new_tokens=max_tokens, sampling=sampling)
    except MmedgeError as e:
        raise RequestRefused(400, str(e)) from None
