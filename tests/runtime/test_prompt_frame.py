"""`prompt.single_turn`: the chat template of one user turn flattened to strings at export, for
runtimes without Jinja (native/). A stored frame reproduces the template exactly, for texts with
markers and for images the template places; a template it cannot express gets no frame (or no
`image`), and the manifest refuses a malformed frame by name."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmedge.errors import ManifestError
from mmedge.manifest import ImageSlotSpec, PromptSpec
from mmedge.runtime.prompt import format_prompt, single_turn_frame

SLOT = ImageSlotSpec(marker="<image>", marker_token_id=3, tokens_per_image=4, embedding_dim=8)
LLAVA = ("{% for message in messages %}{{ message['role'].upper() + ': ' }}{% for c in message['content'] | "
         "selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}{% for c in message['content'] | "
         "selectattr('type', 'equalto', 'text') %}{{ c['text'] + ' ' }}{% endfor %}{% endfor %}"
         "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
TRIMMING = LLAVA.replace("c['text'] + ' '", "c['text'] | trim")  # as Gemma 3's template
UPPERCASING = LLAVA.replace("c['text'] + ' '", "c['text'] | upper")
IMAGES_AFTER_TEXT = ("{% for message in messages %}<u>{% for c in message['content'] | selectattr('type', 'equalto', 'text') %}"
                     "{{ c['text'] }}{% endfor %}{% for c in message['content'] | selectattr('type', 'equalto', 'image') %}"
                     "<image>{% endfor %}</u>{% endfor %}<a>")


def test_a_llava_template_flattens():
    assert single_turn_frame(PromptSpec(chat_template=LLAVA), SLOT) == {
        "before": "USER: ", "after": " ASSISTANT:", "image": "<image>\n"}


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(lambda t: "<image>" not in t),
       n=st.integers(0, 3), inline=st.booleans())
def test_a_stored_frame_reproduces_the_template(text, n, inline):
    spec = PromptSpec(chat_template=LLAVA)
    frame = single_turn_frame(spec, SLOT)
    if inline and n:
        prompt = "<image>" * n + text
        assert format_prompt(prompt, n, spec, SLOT) == frame["before"] + prompt + frame["after"]
    else:
        assert format_prompt(text, n, spec, SLOT) == frame["before"] + frame["image"] * n + text + frame["after"]


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(lambda t: "<image>" not in t),
       n=st.integers(0, 3), inline=st.booleans())
def test_a_trimming_template_gets_a_strip_frame_that_reproduces_it(text, n, inline):
    """Jinja's trim is str.strip (Unicode whitespace included): the frame says so, and native strips alike."""
    spec = PromptSpec(chat_template=TRIMMING)
    frame = single_turn_frame(spec, SLOT)
    assert frame == {"before": "USER: ", "after": "ASSISTANT:", "image": "<image>\n", "strip": True}
    prompt = "<image>" * n + text if inline else text
    placed = "" if inline else frame["image"] * n
    assert format_prompt(prompt, n, spec, SLOT) == frame["before"] + placed + prompt.strip() + frame["after"]


def test_templates_it_cannot_express_get_no_frame_or_no_image():
    assert single_turn_frame(PromptSpec(chat_template=UPPERCASING), SLOT) is None  # the text is changed, not framed
    frame = single_turn_frame(PromptSpec(chat_template=IMAGES_AFTER_TEXT), SLOT)
    assert frame == {"before": "<u>", "after": "</u><a>", "image": None}  # markers in the prompt still work


def test_without_a_template_the_fallback_is_the_frame():
    assert single_turn_frame(PromptSpec(chat_template=None), SLOT) == {"before": "", "after": "", "image": "<image>"}


@pytest.mark.parametrize("value, message", [
    ({"before": "a"}, "prompt.single_turn.after"),
    ({"before": 1, "after": ""}, "prompt.single_turn.before"),
    ({"before": "", "after": "", "image": 3}, "prompt.single_turn.image"),
    ({"before": "", "after": "", "extra": ""}, "unknown fields"),
    ({"before": "", "after": "", "strip": "yes"}, "prompt.single_turn.strip"),
    ("USER:", "prompt.single_turn"),
])
def test_the_manifest_refuses_a_malformed_frame(value, message):
    with pytest.raises(ManifestError, match=message):
        PromptSpec.from_dict({"chat_template": None, "single_turn": value})


def test_strip_is_kept_only_when_set():
    strip = PromptSpec.from_dict({"chat_template": None, "single_turn": {"before": "", "after": "", "strip": True}})
    plain = PromptSpec.from_dict({"chat_template": None, "single_turn": {"before": "", "after": "", "strip": False}})
    assert strip.to_dict()["single_turn"]["strip"] is True and "strip" not in plain.to_dict()["single_turn"]
