"""Chat templates as data, split into the shared image prefix and the per-question suffix.

The prefix (system turn, user turn start, image) is identical for every question about one image, so it is
encoded once and its KV cache serves each question suffix. Text segments are tokenised separately and image
placeholders are inserted as ids, so the prefix-shared and the naive concatenated sequences are the same ids.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from beholder.config import PromptConfig


@dataclass(frozen=True)
class ChatTemplate:
    system: str  # system turn, formatted with {system}
    user_start: str  # opens the user turn
    image_start: str  # text before the image placeholder tokens
    image_token: str  # one placeholder token per visual embedding
    image_end: str  # text after the placeholders
    after_image: str  # text between image_end and the question (PromptConfig.after_image may replace it)
    assistant_start: str  # closes the question and the user turn, opens the assistant turn
    assistant_end: str = "<|im_end|>"  # closes the assistant turn: the last token a training answer supervises
    begin: str = ""  # text before everything: the BOS token of tokenizers that add one (InternLM2's "<s>")


# InternVL2 / InternLM2 chat (ChatML without newlines between turns): InternVL's chat code writes "<image>\n" before
# the question and replaces "<image>" by "<img>" + placeholders + "</img>".
_INTERNVL2 = ChatTemplate(
    system="<|im_start|>system\n{system}<|im_end|>",
    user_start="<|im_start|>user\n",
    image_start="<img>",
    image_token="<IMG_CONTEXT>",
    image_end="</img>",
    after_image="\n",
    assistant_start="<|im_end|><|im_start|>assistant\n",
)
# InternVL2.5 / InternVL3 chat (ArtiMuse, ERNIE-Image-Aes): ChatML with a newline after each <|im_end|>.
_INTERNVL2_5 = dataclasses.replace(
    _INTERNVL2,
    system="<|im_start|>system\n{system}<|im_end|>\n",
    assistant_start="<|im_end|>\n<|im_start|>assistant\n",
)

TEMPLATES: dict[str, ChatTemplate] = {
    "internvl2": _INTERNVL2,
    # InternVL2 with an InternLM2 tokenizer, which starts every encoded text with its BOS token.
    "internlm2-chat": dataclasses.replace(_INTERNVL2, begin="<s>"),
    "internvl2_5": _INTERNVL2_5,
    # Qwen2-VL / Qwen2.5-VL / Qwen3-VL: the same ChatML, their own vision tokens, no newline before the question.
    "qwen2_vl": dataclasses.replace(
        _INTERNVL2_5,
        image_start="<|vision_start|>",
        image_token="<|image_pad|>",
        image_end="<|vision_end|>",
        after_image="",
    ),
}


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown chat template {name!r}; known: {sorted(TEMPLATES)}") from None


def prefix_texts(template: ChatTemplate, prompt: PromptConfig) -> tuple[str, str]:
    """(text before the image placeholders, text after them) of the shared prefix."""
    write_system = prompt.system or prompt.system_turn == "always"
    system_turn = template.system.format(system=prompt.system) if write_system else ""
    head = template.begin + system_turn + template.user_start + template.image_start
    return head, template.image_end


def suffix_text(template: ChatTemplate, prompt: PromptConfig, question: str, answer_prefix: str) -> str:
    """The question turn and the start of the answer, up to the position whose logits are read."""
    after_image = template.after_image if prompt.after_image is None else prompt.after_image
    return after_image + question + template.assistant_start + answer_prefix
