"""Chat templates written for the tiny checkpoints (ours, not copied from any model)."""
from __future__ import annotations


def chatml_template(image_text: str, video_text: str | None = None) -> str:
    """ChatML with every image (then every video) of a message before its text, each image written
    as `image_text`, each video as `video_text` (None: the template takes no videos)."""
    videos = ("{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '" + video_text
              + "' }}{% endfor %}") if video_text is not None else ""
    return (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '" + image_text + "' }}{% endfor %}"
        + videos +
        "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
        "{% endif %}"
        "{{ '<|im_end|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )


def chatml_audio_template(audio_text: str) -> str:
    """ChatML with every audio clip of a message before its text, each written as `audio_text`."""
    return chatml_template(audio_text).replace("'equalto', 'image'", "'equalto', 'audio'")
