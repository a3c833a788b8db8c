"""From the user's prompt and images to a token plan: text token runs and image slots.

The user's prompt is one user message. With no image marker in it, the images go where the
family's chat template puts them (the HF processor's template, rendered with Jinja as
transformers does). With markers, their count must equal the number of images and each
image goes where its marker is. `raw=True` skips the template: the prompt is used as is.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from mmedge.errors import PromptError
from mmedge.audio_spec import AudioSlotSpec
from mmedge.manifest import ImageSlotSpec, PromptSpec


@dataclass(frozen=True)
class ImageRows:
    """A run of image-token positions, filled by rows `start .. start+count` of all images'
    embedding rows (images in prompt order, each image's rows as its layout assembles them)."""

    start: int
    count: int


@dataclass(frozen=True)
class TokenPlan:
    """Alternating runs: lists of token ids and `ImageRows`, in sequence order."""

    items: tuple
    n_positions: int
    # Indices of the prepared inputs in the order their markers stand in the text (empty: as given).
    media_order: tuple[int, ...] = ()

    @property
    def text_tokens(self) -> list[int]:
        return [t for item in self.items if isinstance(item, list) for t in item]


def _generation_tag_extension():
    """transformers' templates may mark assistant text with {% generation %}; it renders its body."""
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationTag(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return GenerationTag


@lru_cache(maxsize=8)
def _compiled_template(template: str):
    """The chat template compiled once per template text: compiling costs milliseconds per prompt."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _generation_tag_extension()])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def _render_template(template: str, messages: list[dict], extra: dict) -> str:
    from jinja2.exceptions import TemplateError

    try:
        return _compiled_template(template).render(messages=messages, add_generation_prompt=True, **extra)
    except TemplateError as e:
        raise PromptError(f"the bundle's chat template failed to render: {e}") from None


def format_prompt(prompt: str, n_images: int, spec: PromptSpec, slot: ImageSlotSpec | AudioSlotSpec, raw: bool = False,
                  content_type: str = "image", videos: tuple[str, int] | None = None) -> str:
    """The full prompt text, markers included, ready for tokenization. `content_type` is the chat
    template's content type of the inputs ("image", or "audio" for an audio bundle's clips);
    `videos` = (video marker, count) when videos come too (template content type "video")."""
    if not isinstance(prompt, str):
        raise PromptError(f"the prompt must be text, got {type(prompt).__name__}")
    kinds = [(content_type, slot.marker, n_images)] + ([("video", *videos)] if videos else [])
    found = [prompt.count(marker) for _, marker, _ in kinds]
    for (kind, marker, count), n_markers in zip(kinds, found):
        noun = "image" if kind == content_type else kind
        if raw and n_markers != count:
            # No template places images in a raw prompt, so "no markers" is not an option here.
            raise PromptError(
                f"a raw prompt needs one {marker!r} per {noun}: found {n_markers}, {noun}s {count}; "
                f"put one marker where each {noun} goes, or drop the raw option to let the chat template place them"
            )
        if any(found) and n_markers != count:
            raise PromptError(
                f"the prompt has {n_markers} {noun} marker(s) {marker!r} but {count} {noun}(s) were given; "
                f"use one marker per {noun}, or none at all to let the chat template place the inputs"
            )
    if raw:
        return prompt
    if any(found):
        content = [{"type": "text", "text": prompt}]
    else:
        content = [{"type": kind} for kind, _, count in kinds for _ in range(count)] + [{"type": "text", "text": prompt}]
    if spec.chat_template:
        return _render_template(spec.chat_template, [{"role": "user", "content": content}], {})
    if any(found):
        return prompt
    return spec.fallback_format.format(images="".join(marker * count for _, marker, count in kinds), text=prompt)


_FRAME_SENTINEL = "MMEDGE-USER-TEXT-0c1f"
# User texts the flattened frame must reproduce exactly (spaces and newlines that a template could
# trim or escape), each alone and after an inline marker, and with 1..3 images the template places.
_FRAME_PROBES = ("Describe this image.", "  leading spaces and a trailing one ", "two\nlines", "<b>&amp;")


def single_turn_frame(spec: PromptSpec, slot: ImageSlotSpec | AudioSlotSpec, content_type: str = "image") -> dict | None:
    """The chat template of one user turn flattened to strings, for runtimes without Jinja
    (native/): `before + text + after` when the text carries its markers, and
    `before + image * k + text + after` when the template places k inputs (`image` None when it
    does not place them that way); with `strip`, the text is stripped first, as templates that
    `trim` the message do (Gemma 3's). None when the template is not such a frame. Every probe is
    rendered both ways and compared, so a frame that is stored is exact for them."""
    def render(text: str, n: int) -> str:
        return format_prompt(text, n, spec, slot, content_type=content_type)

    try:
        rendered = render(_FRAME_SENTINEL, 0)
        if rendered.count(_FRAME_SENTINEL) != 1:
            return None
        before, after = rendered.split(_FRAME_SENTINEL)
        strip = render(_FRAME_PROBES[1], 0) == before + _FRAME_PROBES[1].strip() + after  # the template trims

        def user(text: str) -> str:
            return text.strip() if strip else text

        for probe in _FRAME_PROBES:
            if (render(probe, 0) != before + user(probe) + after
                    or render(slot.marker + probe, 1) != before + user(slot.marker + probe) + after):
                return None
        with_one = render(_FRAME_SENTINEL, 1)
        image = None
        if with_one.startswith(before) and with_one.endswith(_FRAME_SENTINEL + after) and with_one.count(_FRAME_SENTINEL) == 1:
            image = with_one[len(before): len(with_one) - len(_FRAME_SENTINEL + after)]
            if not image or any(render(p, k) != before + image * k + user(p) + after for k in (1, 2, 3) for p in _FRAME_PROBES):
                image = None
    except PromptError:  # a template that refuses some probe is not a frame
        return None
    return {"before": before, "after": after, "image": image, **({"strip": True} if strip else {})}


def format_chat(turns: list[tuple[str, str]], spec: PromptSpec) -> str:
    """A conversation of (role, text) turns, media markers in the text where each input stood,
    through the bundle's chat template: the full prompt, ready for tokenization. Roles are the chat
    template's (system, user, assistant); a bundle without a template takes single prompts only."""
    if not spec.chat_template:
        raise PromptError("this bundle has no chat template, so it takes one user message without a system prompt or "
                          "earlier turns; send the whole question as one user message")
    messages = [{"role": role, "content": [{"type": "text", "text": text}]} for role, text in turns]
    return _render_template(spec.chat_template, messages, {})


def expand_media_markers(text: str, markers: list[tuple[str, list[str]]]) -> tuple[str, list[tuple[int, int]]]:
    """Replace each marker occurrence, in text order, with the next expansion of its kind;
    `markers` = [(marker, expansions)] per kind. Returns the text and the (kind, index) of each
    expansion in text order (the order the media's rows take)."""
    for marker, expansions in markers:
        if text.count(marker) != len(expansions):
            expand_markers(text, marker, expansions)  # raises the count error
    out, order, pos = [], [], 0
    taken = [0] * len(markers)
    while True:
        hits = [(text.find(marker, pos), k) for k, (marker, _) in enumerate(markers)]
        hits = [(at, k) for at, k in hits if at >= 0]
        if not hits:
            break
        at, k = min(hits)
        marker, expansions = markers[k]
        out += [text[pos:at], expansions[taken[k]]]
        order.append((k, taken[k]))
        taken[k] += 1
        pos = at + len(marker)
    out.append(text[pos:])
    return "".join(out), order


def expand_markers(text: str, marker: str, expansions: list[str]) -> str:
    """Replace the i-th marker in `text` with `expansions[i]` (what the HF processor does on the text)."""
    pieces = text.split(marker)
    if len(pieces) - 1 != len(expansions):
        raise PromptError(
            f"the formatted prompt holds {len(pieces) - 1} image marker(s) {marker!r} but {len(expansions)} image(s) were given; "
            "the chat template or the prompt placed markers differently from the images"
        )
    out = [pieces[0]]
    for expansion, piece in zip(expansions, pieces[1:]):
        out += [expansion, piece]
    return "".join(out)


def plan_tokens(token_ids: list[int], image_token_id: int | frozenset[int], n_rows: int) -> TokenPlan:
    """Split tokenized text at runs of the image token (or any of a set: image and video tokens);
    the runs take the media rows in order."""
    media_tokens = image_token_id if isinstance(image_token_id, frozenset) else frozenset((image_token_id,))
    items: list = []
    run: list[int] = []
    filled = 0
    for tok in token_ids:
        if tok in media_tokens:
            if run:
                items.append(run)
                run = []
            if items and isinstance(items[-1], ImageRows):
                items[-1] = ImageRows(items[-1].start, items[-1].count + 1)
            else:
                items.append(ImageRows(filled, 1))
            filled += 1
        else:
            run.append(tok)
    if run:
        items.append(run)
    if filled != n_rows:
        raise PromptError(
            f"the tokenized prompt holds {filled} image-token positions but the images give {n_rows} embedding rows; "
            "the prompt text contains image tokens of its own, or the tokenizer splits the image token"
        )
    return TokenPlan(items=tuple(items), n_positions=len(token_ids))
