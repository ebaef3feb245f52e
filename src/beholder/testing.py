"""Tiny random models and images for tests and benchmarks, built offline in a second or two.

make_tiny_model writes a real beholder model folder: a transformers backbone with random weights (InternVL or
Qwen2-VL family), a byte-level BPE tokenizer trained here with `tokenizers` (the prompt words, the level
words and the ArtiMuse score tokens are single tokens), random heads, and a preset's config; or, for the
image-embedding backbones (clip, siglip), a tiny image tower and the preset's MLP head.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from beholder.preprocess import CLIP_MEAN, CLIP_STD, PreprocessConfig
from beholder.model.aesthetic import AestheticModel
from beholder.model.embedding_model import EmbeddingModel
from beholder.model.folder import ScoringModel, save_model
from beholder.presets import ARTIMUSE_TOKENS, PRESETS, preset
from beholder.standard import DISPLAY_NAMES, LEVELS

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<img>", "</img>", "<IMG_CONTEXT>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
)
_TILE = 56  # tiny tile side: 4x4 patches of 14 -> 4 tokens per tile after pixel shuffle


def _corpus() -> list[str]:
    lines = []
    for config in PRESETS.values():
        prompt = config.prompt
        lines += [prompt.system, prompt.question, prompt.answer_prefix, prompt.expert_question]
        lines += [q.question for q in prompt.scores]
    # Level words after a space are what the level heads read: make them frequent enough to become tokens.
    lines += [f"The aesthetics of the human image is {level}" for level in LEVELS] * 10
    lines += [f"{i}. {name} : {level}" for level in LEVELS for i, name in enumerate(DISPLAY_NAMES.values(), 1)]
    lines += list(ARTIMUSE_TOKENS)  # each alone, as they follow "assistant\n": no leading space
    lines += ["You are a helpful assistant.", "Rate the aesthetics of this picture from 12 different dimensions."]
    return [line for line in lines if line] * 20


def make_tokenizer(vocab_size: int = 1200):
    """A byte-level BPE tokenizer (PreTrainedTokenizerFast) trained on the prompts beholder uses."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    # What the level heads read must be whole tokens of the learned vocabulary. (Added tokens would not do:
    # "ai" as an added token would split " fair" into " f", "ai", "r".)
    for word in ARTIMUSE_TOKENS + tuple(" " + level for level in LEVELS):
        if len(fast.encode(word, add_special_tokens=False)) != 1:
            raise RuntimeError(f"tiny tokenizer: {word!r} is not a single token")
    return fast


# Backbone shapes as data. "internvl2-1b" is InternVL2-1B's real geometry (InternViT-300M + Qwen2-0.5B, 448 tiles,
# 256 tokens per tile, the full 151,674-row vocabulary) for benchmarks; "tiny" keeps tests fast.
SIZES: dict[str, dict] = {
    "tiny": dict(
        vision=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=_TILE),
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2),
        vocab_size=None,  # the tokenizer's own size
    ),
    # The tiny widths at the released models' tile geometry (448 px, 256 tokens per tile): for measuring what
    # preprocessing choices do to scores at the real input size, in seconds.
    "tiny-448": dict(
        vision=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=448),
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2),
        vocab_size=None,
    ),
    # Enough capacity to learn planted visual signals from scratch on a CPU (benchmarks/synthetic_hiaa.py):
    # 112-pixel tiles = 8x8 patches -> 16 visual tokens per tile.
    "small": dict(
        vision=dict(hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=192, image_size=112),
        text=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2),
        vocab_size=None,
    ),
    "internvl2-1b": dict(
        vision=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                    image_size=448),
        text=dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2),
        vocab_size=151674,
    ),
    # InternVL2-8B / HumanAesExpert-8B's geometry: InternViT-300M + InternLM2.5-7B's dimensions, on a Qwen2-type
    # decoder (InternLM2 differs by having no qkv biases: the same matmuls). 8B parameters, 32 GB in float32:
    # build it on the meta device (`with torch.device("meta"): build_model(...)`) to count its FLOPs.
    "internvl2-8b": dict(
        vision=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                    image_size=448),
        text=dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8),
        vocab_size=92553,
    ),
}


def _internvl_config(tokenizer, size: dict):
    from transformers import InternVLConfig

    image_size = size["vision"]["image_size"]
    return InternVLConfig(
        vision_config=dict(**size["vision"], patch_size=14),
        text_config=dict(
            model_type="qwen2", vocab_size=size["vocab_size"] or len(tokenizer), max_position_embeddings=32768,
            tie_word_embeddings=True, **size["text"],
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=(image_size // 14) ** 2 // 4,
    )


def _qwen_vl_config(family: str):
    """Config builder for the Qwen-VL families; their vision towers differ, the text side is shared."""

    def make(tokenizer, size: dict):
        from transformers import AutoConfig

        ids = tokenizer.convert_tokens_to_ids
        text, vision = dict(size["text"]), size["vision"]
        head_dim = text["hidden_size"] // text["num_attention_heads"]
        quarter = head_dim // 8  # a quarter of the rotary half-dimension
        # multimodal RoPE: temporal / height / width sections of the rotary half-dimension
        rope = {"rope_type": "default", "rope_theta": 10000.0,
                "mrope_section": [quarter, quarter * 3 // 2, quarter * 3 // 2]}
        tower = dict(depth=vision["num_hidden_layers"], num_heads=vision["num_attention_heads"],
                     spatial_merge_size=2, temporal_patch_size=2, patch_size=14)
        if family == "qwen2_vl":
            tower.update(embed_dim=vision["hidden_size"], hidden_size=text["hidden_size"])
        else:
            tower.update(hidden_size=vision["hidden_size"], intermediate_size=vision["intermediate_size"],
                         out_hidden_size=text["hidden_size"])
        if family == "qwen2_5_vl":
            tower.update(fullatt_block_indexes=[tower["depth"] - 1], window_size=112)
        if family == "qwen3_vl":
            tower.update(patch_size=16, num_position_embeddings=64, deepstack_visual_indexes=[0])
            text.update(head_dim=head_dim)
            rope["mrope_interleaved"] = True
        return AutoConfig.for_model(
            family,
            vision_config=tower,
            text_config=dict(
                vocab_size=size["vocab_size"] or len(tokenizer), max_position_embeddings=32768, rope_parameters=rope,
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), **text,
            ),
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
        )

    return make


_QWEN_PREPROCESS = PreprocessConfig(
    mode="qwen2_vl", min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 16, mean=CLIP_MEAN, std=CLIP_STD
)


_BACKBONES = {
    "internvl": (_internvl_config, "internvl2", PreprocessConfig(max_tiles=6)),
    **{family: (_qwen_vl_config(family), "qwen2_vl", _QWEN_PREPROCESS)
       for family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")},
}


# Tiny image towers: 56 px = 4x4 patches of 14.
_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14,
              image_size=_TILE)
# The released towers' geometry (random weights), for benchmarks: CLIP ViT-L/14 at 224 px (LAION's predictors),
# SigLIP so400m-patch14-384 (aesthetic-predictor-v2.5).
RELEASED_TOWERS = {
    "clip": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
                 image_size=224, projection_dim=768),
    "siglip": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                   patch_size=14, image_size=384),
}
EMBEDDING_DEFAULT_PRESETS = {"clip": "laion-aesthetic-v2", "siglip": "aesthetic-predictor-v2.5"}


def tiny_tower_config(backbone: str, size: str = "tiny"):
    """The config of a random CLIP or SigLIP image tower: tiny (CLIP with a 16-wide projection), or "released"."""
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    if size == "released":
        fields = RELEASED_TOWERS[backbone]
    else:
        fields = {**_TOWER, "projection_dim": 16} if backbone == "clip" else _TOWER
    return (CLIPVisionConfig if backbone == "clip" else SiglipVisionConfig)(**fields)


def _build_embedding_model(backbone: str, seed: int, preset_name: str | None, size: str) -> EmbeddingModel:
    from beholder.model.adapters import adapter_for

    base = preset(preset_name or EMBEDDING_DEFAULT_PRESETS[backbone])
    tower_config = tiny_tower_config(backbone, size)
    config = dataclasses.replace(
        base,
        name=f"random-{size}-{base.name}-{backbone}",
        backbone=backbone,
        preprocess=dataclasses.replace(base.preprocess, image_size=tower_config.image_size),
    )
    torch.manual_seed(seed)
    tower = adapter_for(backbone).hf_class(tower_config)
    return EmbeddingModel(tower.eval(), config).eval()


def build_model(
    backbone: str = "internvl",
    seed: int = 0,
    *,
    preset_name: str | None = None,
    size: str | dict = "tiny",
    max_tiles: int | None = None,
) -> ScoringModel:
    """A random-weight model in memory (float32, eval mode): an AestheticModel for the chat backbones (preset
    humanaesexpert unless named; `size` a key of SIZES or a shape of that form), an EmbeddingModel for clip and siglip (their LAION / v2.5
    preset unless named; `size` "tiny" or "released")."""
    from transformers import AutoModelForImageTextToText

    if backbone in EMBEDDING_DEFAULT_PRESETS:
        return _build_embedding_model(backbone, seed, preset_name, size)
    preset_name = preset_name or "humanaesexpert"
    if backbone not in _BACKBONES:
        raise ValueError(
            f"tiny models exist for backbones {sorted([*_BACKBONES, *EMBEDDING_DEFAULT_PRESETS])}, not {backbone!r}"
        )
    make_config, template, preprocess = _BACKBONES[backbone]
    shape = SIZES[size] if isinstance(size, str) else size  # a SIZES name, or a shape of the same form
    base = preset(preset_name)
    if base.preprocess.mode in ("squash", "pad") and backbone == "internvl":
        preprocess = base.preprocess
    preprocess = dataclasses.replace(
        preprocess, image_size=shape["vision"]["image_size"], max_tiles=max_tiles or preprocess.max_tiles
    )
    system = base.prompt.system if template == "internvl2" or not base.prompt.system else "You are a helpful assistant."
    config = dataclasses.replace(
        base,
        name=f"random-{size if isinstance(size, str) else 'custom'}-{preset_name}-{backbone}",
        backbone=backbone,
        preprocess=preprocess,
        # the preset's layout after the image is InternVL's; Qwen templates keep their own
        prompt=dataclasses.replace(base.prompt, template=template, system=system,
                                   after_image=base.prompt.after_image if template == "internvl2" else None),
    )
    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    hf_model = AutoModelForImageTextToText.from_config(make_config(tokenizer, shape))
    model = AestheticModel(hf_model.eval(), tokenizer, config)
    _randomise_batchnorm(model, seed)
    return model.eval()


def make_tiny_model(
    path: str | Path, backbone: str = "internvl", seed: int = 0, *, preset_name: str | None = None
) -> Path:
    """Write a tiny random beholder model folder at `path` and return the path."""
    return save_model(build_model(backbone, seed, preset_name=preset_name), path)


def _randomise_batchnorm(model: ScoringModel, seed: int) -> None:
    """Give the MetaVoter's BatchNorm non-trivial running statistics, so tests exercise them."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.heads.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def make_image(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A deterministic RGB test image: smooth gradients plus noise, so JPEG and resizing behave like photos."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), (x + y) / max(width + height - 2, 1)], -1)
    pixels = base * 200 + rng.normal(0, 20, (height, width, 3)) + rng.uniform(0, 40, 3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@torch.inference_mode()
def naive_full(model: AestheticModel, visual) -> dict[str, torch.Tensor]:
    """The official-style reference for one image: two complete forward passes (overall prompt, 12-dim prompt),
    each re-encoding the image and computing logits over the whole vocabulary at every position, then the
    heads' formulas written out directly. Used to check the prefix-shared path and as the benchmark baseline."""
    heads = model.heads
    images = {k: v.to(model.device) for k, v in model.backbone.collate([visual]).items()}
    images["pixel_values"] = images["pixel_values"].to(model.hf_model.dtype)
    prefix = model.prefix_ids(visual.n_tokens)
    passes = []
    for suffix in (model.question_ids, model.expert_question_ids):
        ids = torch.tensor([prefix + suffix], device=model.device)
        extra = model.backbone.generation_inputs(ids, images)
        out = model.hf_model(input_ids=ids, **images, **extra, output_hidden_states=True)
        passes.append((out.logits[0, -1].float(), out.hidden_states[-1][0, -1].float()))
    (logits, hidden), (_, expert_hidden) = passes
    probs = logits[heads.level.token_ids].softmax(-1)
    weights = heads.level.weights
    lm = ((probs * weights).sum() - weights.min()) / (weights.max() - weights.min())
    regression = hidden @ heads.regression.weight[0] + heads.regression.bias[0]
    dimensions = heads.expert(expert_hidden[None])[0]
    voter = heads.metavoter.net
    z = voter[0](torch.stack([lm, regression, dimensions[-1]]))
    bn = voter[1]
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    final = voter[3](z.clamp(min=0))[0]
    return {"lm": lm, "regression": regression, "expert": dimensions[-1], "dimensions": dimensions, "metavoter": final}
