"""One InternVL chat-layout checkpoint folder -> one beholder model folder.

The checkpoint decides what it computes: the backbone and its weights, the tokenizer, the chat template and
system message of its config, the image size and the heads it carries. The preset decides what the original
code asks and reads: the question, answer prefix, level tokens, preprocessing, scale and licence. The result is
checked against transformers' InternVL model and beholder's heads before anything is written, and it is written
into a temporary folder beside the destination and renamed into place, so a destination is always complete.
"""

from __future__ import annotations

import dataclasses
from contextlib import closing
from pathlib import Path

import torch
from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    PreTrainedTokenizerBase,
)

from beholder import presets
from beholder.config import HeadsConfig, ModelConfig, RegressionHeadConfig
from beholder.convert.heads import (
    EXPERT_PREFIX,
    REGRESSION_PREFIX,
    CheckpointHeads,
    HeadLayoutError,
    read_heads,
)
from beholder.convert.internvl_chat import convert_weights, native_config
from beholder.convert.output import check_destination, write_folder
from beholder.convert.tensors import ConversionError, TensorSource, read_json
from beholder.convert.tokenizer import load_tokenizer
from beholder.model.aesthetic import AestheticModel
from beholder.model.folder import write_heads
from beholder.model.prompts import get_template

IMAGE_TOKEN = "<IMG_CONTEXT>"
# The chat config's `template` (a conversation template of InternVL's public code) -> the beholder templates that
# lay the prompt out the same way; which one applies depends on whether the tokenizer starts texts with a BOS.
CHAT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Hermes-2": ("internvl2", "internlm2-chat"),
    "internlm2-chat": ("internvl2", "internlm2-chat"),
    "internvl2_5": ("internvl2_5",),
}


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    preset: str | ModelConfig | None = None,
    hub_id: str | None = None,
    expert_activation: str | None = None,
) -> Path:
    """Convert the chat-layout checkpoint in `src` into a new beholder model folder `dst` and return `dst`.

    preset: the preset (name or config) whose prompts, preprocessing and scale the model uses; when None it is
        "humanaesexpert" if the checkpoint carries aesthetic heads, else an error asks for one.
    hub_id: recorded as the weights' origin (default: the preset's).
    expert_activation: the activation inside the expert head's parent FFNs, which no tensor records; needed
        only when those FFNs have a hidden layer.
    Raises ConversionError (HeadLayoutError for heads) naming what does not fit; nothing is written then.
    """
    src, dst = Path(src), Path(dst)
    check_destination(dst)
    chat = read_json(src / "config.json")
    tokenizer = load_tokenizer(src)
    native = native_config(chat, _image_token_id(tokenizer))
    with closing(TensorSource(src)) as tensors:
        weights = convert_weights(tensors, chat, native)
        heads = read_heads(tensors, native.text_config.hidden_size, expert_activation)
        tensors.check_all_used()
    config = _model_config(_base(preset, heads), chat, native, tokenizer, heads, hub_id)
    _check_model(native, tokenizer, config, heads)
    return _write(dst, native, weights, tokenizer, config, heads)


def is_chat_checkpoint(folder: str | Path) -> bool:
    """Whether `folder` looks like a checkpoint in InternVL's chat layout (a config with llm_config and
    vision_config), the layout convert_checkpoint reads."""
    try:
        chat = read_json(Path(folder) / "config.json")
    except ConversionError:
        return False
    return isinstance(chat, dict) and "llm_config" in chat and "vision_config" in chat


def _image_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ConversionError(f"the tokenizer has no {IMAGE_TOKEN} token, so images cannot be placed in the prompt")
    return token_id


def _base(preset: str | ModelConfig | None, heads: CheckpointHeads) -> ModelConfig:
    if isinstance(preset, ModelConfig):
        return preset
    if preset is not None:
        return presets.preset(preset)
    if heads.regression or heads.expert:
        return presets.preset("humanaesexpert")
    raise ConversionError(
        "the checkpoint carries no aesthetic heads, so nothing says which scorer it is: name its preset "
        f"(preset= / --preset), one of {sorted(presets.PRESETS)}"
    )


def _begin_text(tokenizer: PreTrainedTokenizerBase) -> str:
    """What the tokenizer puts before every encoded text by itself ("<s>" for InternLM2, "" for Qwen2)."""
    plain = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a", add_special_tokens=True)
    if full[len(full) - len(plain) :] != plain:
        raise ConversionError(f"the tokenizer adds tokens after the text ({full} for {plain}); not supported")
    return "".join(tokenizer.convert_ids_to_tokens(full[: len(full) - len(plain)]))


def _template(chat: dict, tokenizer: PreTrainedTokenizerBase) -> str:
    name = chat.get("template")
    if name not in CHAT_TEMPLATES:
        raise ConversionError(f"chat template {name!r} of the checkpoint is not supported; supported: "
                              f"{sorted(CHAT_TEMPLATES)}")
    begin = _begin_text(tokenizer)
    for candidate in CHAT_TEMPLATES[name]:
        if get_template(candidate).begin == begin:
            return candidate
    raise ConversionError(f"chat template {name!r} with a tokenizer that starts every text with {begin!r} is not "
                          "supported")


def _heads_config(wanted: HeadsConfig, found: CheckpointHeads) -> HeadsConfig:
    """The preset's level head plus the heads the checkpoint carries; a head the preset needs must be there."""
    missing = [f"{what} (no tensors under {prefix}*)"
               for what, needed, present, prefix in (
                   ("regression head", wanted.regression, found.regression, REGRESSION_PREFIX),
                   ("expert head", wanted.expert, found.expert, EXPERT_PREFIX),
               ) if needed and not present]
    if missing:
        raise HeadLayoutError(f"the preset scores with heads the checkpoint does not have: {', '.join(missing)}")
    regression = RegressionHeadConfig() if found.regression else None
    return dataclasses.replace(wanted, regression=regression, expert=found.expert, metavoter=found.metavoter)


def _model_config(
    base: ModelConfig,
    chat: dict,
    native: InternVLConfig,
    tokenizer: PreTrainedTokenizerBase,
    heads: CheckpointHeads,
    hub_id: str | None,
) -> ModelConfig:
    prompt = dataclasses.replace(
        base.prompt, template=_template(chat, tokenizer), system=chat.get("system_message", base.prompt.system)
    )
    preprocess = dataclasses.replace(base.preprocess, image_size=native.vision_config.image_size[0])
    return dataclasses.replace(
        base,
        backbone="internvl",
        prompt=prompt,
        preprocess=preprocess,
        heads=_heads_config(base.heads, heads),
        hub_id=hub_id or base.hub_id,
    )


def _check_model(
    native: InternVLConfig, tokenizer: PreTrainedTokenizerBase, config: ModelConfig, heads: CheckpointHeads
) -> None:
    """Build the beholder model without weights (prompt tokens, level tokens, image token) and load the heads."""
    with torch.device("meta"):
        hf_model = InternVLForConditionalGeneration(native)
    try:
        model = AestheticModel(hf_model, tokenizer, config)
        model.heads.load_state_dict(heads.state)
    except (ValueError, RuntimeError) as exc:
        raise ConversionError(f"the converted model would not load: {exc}") from exc


def _write(
    dst: Path,
    native: InternVLConfig,
    weights: dict[str, torch.Tensor],
    tokenizer: PreTrainedTokenizerBase,
    config: ModelConfig,
    heads: CheckpointHeads,
) -> Path:
    from huggingface_hub import save_torch_state_dict

    def fill(folder: Path) -> None:
        native.save_pretrained(folder)
        save_torch_state_dict(weights, folder, max_shard_size="5GB")
        tokenizer.save_pretrained(folder)
        config.save(folder)
        write_heads(heads.state, folder)

    return write_folder(dst, fill)
