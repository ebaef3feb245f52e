"""InternVL's original "chat" layout (InternVLChatModel, remote code) -> transformers' native InternVL layout.

Chat layout (config.json model_type "internvl_chat"; tensor names of the public InternVL chat code):
  vision_model.embeddings.{class_embedding, patch_embedding, position_embedding}
  vision_model.encoder.layers.N.{attn.qkv, attn.proj, attn.q_norm, attn.k_norm, ls1, ls2, mlp.fc1, mlp.fc2,
                                 norm1, norm2}                                   InternViT
  mlp1.{0: LayerNorm, 1: Linear, 3: Linear}                                      projector (GELU at index 2)
  language_model.model.* + language_model.lm_head                               Qwen2ForCausalLM
  language_model.model.{tok_embeddings, layers.N.attention.{wqkv, wo}, layers.N.feed_forward.{w1, w2, w3},
                        layers.N.{attention_norm, ffn_norm}, norm} + language_model.output   InternLM2ForCausalLM
Native layout: model.vision_tower.*, model.multi_modal_projector.*, model.language_model.*, lm_head.*; an
InternLM2 language model becomes a Llama one, its fused wqkv split into q/k/v as transformers' own InternVL
conversion does. Only what both layouts compute identically is accepted (pixel shuffle v2, the last ViT layer);
anything else stops the conversion with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from transformers import InternVLConfig

from beholder.convert.tensors import ConversionError, TensorSource

CHAT_MODEL_TYPE = "internvl_chat"
LANGUAGE_MODELS = {"Qwen2ForCausalLM": "qwen2", "InternLM2ForCausalLM": "internlm2"}

# ---------------------------------------------------------------------------------------------------------------
# config


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConversionError(message)


def language_model_kind(chat: dict[str, Any]) -> str:
    """"qwen2" or "internlm2" from the chat config's llm_config.architectures."""
    architectures = chat.get("llm_config", {}).get("architectures") or ["?"]
    kind = LANGUAGE_MODELS.get(architectures[0])
    _require(kind is not None, f"language model {architectures[0]} is not supported; supported: "
             f"{sorted(LANGUAGE_MODELS)}")
    return kind


def _rope(llm: dict[str, Any]) -> dict[str, Any]:
    parameters = {"rope_type": "default", "rope_theta": float(llm.get("rope_theta", 10000.0))}
    scaling = llm.get("rope_scaling")
    if scaling:
        kind = scaling.get("rope_type") or scaling.get("type")
        _require(kind in ("linear", "dynamic"), f"rope scaling {scaling} is not supported")
        parameters.update(rope_type=kind, factor=float(scaling["factor"]))
    return parameters


def _text_config(chat: dict[str, Any]) -> dict[str, Any]:
    llm = chat["llm_config"]
    common = {
        key: llm[key]
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "max_position_embeddings", "rms_norm_eps", "bos_token_id", "eos_token_id", "pad_token_id")
        if key in llm
    }
    common.update(
        num_key_value_heads=llm.get("num_key_value_heads") or llm["num_attention_heads"],
        hidden_act=llm.get("hidden_act", "silu"),
        rope_parameters=_rope(llm),
        tie_word_embeddings=False,  # InternVLChatConfig forces untied embeddings for every size
    )
    if language_model_kind(chat) == "qwen2":
        window = {k: llm[k] for k in ("use_sliding_window", "sliding_window", "max_window_layers") if k in llm}
        return {"model_type": "qwen2", **common, **window}
    # InternLM2: one `bias` switch for wqkv and wo, none in the MLP; the head size is implied
    return {"model_type": "llama", **common, "attention_bias": bool(llm.get("bias", False)), "mlp_bias": False,
            "head_dim": common["hidden_size"] // common["num_attention_heads"]}


def _vision_config(chat: dict[str, Any]) -> dict[str, Any]:
    vision = chat["vision_config"]
    qk_norm = bool(vision.get("qk_normalization", False))
    eps = float(vision.get("layer_norm_eps", 1e-6))
    # transformers' InternViT q/k norms use eps 1e-6 whatever the config says
    _require(not qk_norm or eps == 1e-6, f"qk normalisation with layer_norm_eps={eps} is not supported (only 1e-6)")
    return {
        "hidden_size": vision["hidden_size"],
        "num_hidden_layers": vision["num_hidden_layers"],
        "num_attention_heads": vision["num_attention_heads"],
        "intermediate_size": vision["intermediate_size"],
        "image_size": chat.get("force_image_size") or vision["image_size"],
        "patch_size": vision["patch_size"],
        "attention_bias": bool(vision.get("qkv_bias", True)),
        "use_qk_norm": qk_norm,
        "norm_type": vision.get("norm_type", "layer_norm"),
        "layer_norm_eps": eps,
        "hidden_act": vision.get("hidden_act", "gelu"),
        "use_absolute_position_embeddings": True,
        "use_mean_pooling": True,  # no final norm: InternViT's last hidden state is the last layer's output
    }


def native_config(chat: dict[str, Any], image_token_id: int) -> InternVLConfig:
    """The transformers InternVLConfig computing what the chat config describes; refuses what it cannot."""
    _require(chat.get("model_type") == CHAT_MODEL_TYPE, f"not an InternVL chat checkpoint (model_type "
             f"{chat.get('model_type')!r}, expected {CHAT_MODEL_TYPE!r})")
    _require(chat.get("select_layer", -1) == -1, f"select_layer={chat.get('select_layer')}: only the last ViT "
             "layer (-1) is supported")
    _require(chat.get("ps_version", "v1") == "v2", f"ps_version={chat.get('ps_version', 'v1')!r}: pixel shuffle "
             "v1 (transposed features) is not supported, only v2")
    vision = _vision_config(chat)
    ratio = float(chat.get("downsample_ratio", 0.5))
    side = vision["image_size"] // vision["patch_size"]
    return InternVLConfig(
        vision_config=vision,
        text_config=_text_config(chat),
        image_token_id=image_token_id,
        image_seq_length=int(side * side * ratio * ratio),
        downsample_ratio=ratio,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


# ---------------------------------------------------------------------------------------------------------------
# weights: rules from a source name pattern to the native tensors it becomes

Handler = Callable[[re.Match, torch.Tensor], dict[str, torch.Tensor]]
Rule = tuple[re.Pattern, Handler]


def _rename(template: str) -> Handler:
    return lambda match, tensor: {match.expand(template): tensor}


def _split_thirds(prefix: str) -> Handler:
    """InternViT's attn.qkv: rows [q; k; v] -> q_proj, k_proj, v_proj (match groups: layer, weight|bias)."""

    def split(match: re.Match, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        layer, kind = match.groups()
        parts = tensor.chunk(3, dim=0)
        return {f"{prefix}{layer}.attention.{p}_proj.{kind}": t.clone() for p, t in zip("qkv", parts)}

    return split


def _split_wqkv(heads: int, kv_heads: int, head_dim: int) -> Handler:
    """InternLM2's fused wqkv is grouped per KV head: for each of the kv_heads groups, its heads/kv_heads query
    heads, then its key head, then its value head (rows of head_dim each). Query head i therefore uses KV head
    i // (heads / kv_heads), exactly the grouping of a Llama attention with separate q/k/v projections."""
    group = heads // kv_heads

    def split(match: re.Match, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        layer, kind = match.groups()
        expected = kv_heads * (group + 2) * head_dim
        _require(tensor.shape[0] == expected, f"{match.string}: {tuple(tensor.shape)} has {tensor.shape[0]} rows, "
                 f"expected {kv_heads} kv heads x ({group} q + k + v) x {head_dim} = {expected}")
        grouped = tensor.reshape(kv_heads, group + 2, head_dim, *tensor.shape[1:])
        parts = {
            "q": grouped[:, :group].reshape(heads * head_dim, *tensor.shape[1:]),
            "k": grouped[:, group].reshape(kv_heads * head_dim, *tensor.shape[1:]),
            "v": grouped[:, group + 1].reshape(kv_heads * head_dim, *tensor.shape[1:]),
        }
        return {f"model.language_model.layers.{layer}.self_attn.{p}_proj.{kind}": t.clone() for p, t in parts.items()}

    return split


_VISION_LAYER = r"vision_model\.encoder\.layers\.(\d+)\."
_NATIVE_VISION = "model.vision_tower."
_NATIVE_VISION_LAYER = _NATIVE_VISION + r"encoder.layer.\1."


def _vision_rules() -> list[tuple[str, Handler]]:
    return [
        (r"vision_model\.embeddings\.class_embedding", _rename(_NATIVE_VISION + "embeddings.cls_token")),
        (r"vision_model\.embeddings\.patch_embedding\.(weight|bias)",
         _rename(_NATIVE_VISION + r"embeddings.patch_embeddings.projection.\1")),
        (r"vision_model\.embeddings\.position_embedding", _rename(_NATIVE_VISION + "embeddings.position_embeddings")),
        (_VISION_LAYER + r"attn\.qkv\.(weight|bias)", _split_thirds(_NATIVE_VISION + "encoder.layer.")),
        (_VISION_LAYER + r"attn\.proj\.(weight|bias)",
         _rename(_NATIVE_VISION_LAYER + r"attention.projection_layer.\2")),
        (_VISION_LAYER + r"attn\.(q_norm|k_norm)\.weight", _rename(_NATIVE_VISION_LAYER + r"attention.\2.weight")),
        (_VISION_LAYER + r"ls([12])", _rename(_NATIVE_VISION_LAYER + r"lambda_\2")),
        (_VISION_LAYER + r"mlp\.(fc[12])\.(weight|bias)", _rename(_NATIVE_VISION_LAYER + r"mlp.\2.\3")),
        (_VISION_LAYER + r"norm1\.(weight|bias)", _rename(_NATIVE_VISION_LAYER + r"layernorm_before.\2")),
        (_VISION_LAYER + r"norm2\.(weight|bias)", _rename(_NATIVE_VISION_LAYER + r"layernorm_after.\2")),
        (r"mlp1\.0\.(weight|bias)", _rename(r"model.multi_modal_projector.layer_norm.\1")),
        (r"mlp1\.1\.(weight|bias)", _rename(r"model.multi_modal_projector.linear_1.\1")),
        (r"mlp1\.3\.(weight|bias)", _rename(r"model.multi_modal_projector.linear_2.\1")),
    ]


_LM_LAYER = r"language_model\.model\.layers\.(\d+)\."
_NATIVE_LM = "model.language_model."
_NATIVE_LM_LAYER = _NATIVE_LM + r"layers.\1."


def _qwen2_rules() -> list[tuple[str, Handler]]:
    return [
        (r"language_model\.model\.(embed_tokens|norm)\.weight", _rename(_NATIVE_LM + r"\1.weight")),
        (_LM_LAYER + r"(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj|input_layernorm|post_attention_layernorm)"
         r"\.(weight|bias)", _rename(_NATIVE_LM_LAYER + r"\2.\3")),
        (r"language_model\.lm_head\.weight", _rename("lm_head.weight")),
    ]


def _internlm2_rules(text: dict[str, Any]) -> list[tuple[str, Handler]]:
    split = _split_wqkv(text["num_attention_heads"], text["num_key_value_heads"], text["head_dim"])
    return [
        (r"language_model\.model\.tok_embeddings\.weight", _rename(_NATIVE_LM + "embed_tokens.weight")),
        (r"language_model\.model\.norm\.weight", _rename(_NATIVE_LM + "norm.weight")),
        (_LM_LAYER + r"attention\.wqkv\.(weight|bias)", split),
        (_LM_LAYER + r"attention\.wo\.(weight|bias)", _rename(_NATIVE_LM_LAYER + r"self_attn.o_proj.\2")),
        (_LM_LAYER + r"feed_forward\.w1\.weight", _rename(_NATIVE_LM_LAYER + "mlp.gate_proj.weight")),
        (_LM_LAYER + r"feed_forward\.w3\.weight", _rename(_NATIVE_LM_LAYER + "mlp.up_proj.weight")),
        (_LM_LAYER + r"feed_forward\.w2\.weight", _rename(_NATIVE_LM_LAYER + "mlp.down_proj.weight")),
        (_LM_LAYER + r"attention_norm\.weight", _rename(_NATIVE_LM_LAYER + "input_layernorm.weight")),
        (_LM_LAYER + r"ffn_norm\.weight", _rename(_NATIVE_LM_LAYER + "post_attention_layernorm.weight")),
        (r"language_model\.output\.weight", _rename("lm_head.weight")),
    ]


def convert_weights(source: TensorSource, chat: dict[str, Any], config: InternVLConfig) -> dict[str, torch.Tensor]:
    """The native state dict, from every source tensor a rule claims; the rest stays untaken in `source`."""
    text = config.text_config.to_dict()
    language = _qwen2_rules() if language_model_kind(chat) == "qwen2" else _internlm2_rules(text)
    rules: list[Rule] = [(re.compile(pattern), handler) for pattern, handler in _vision_rules() + language]
    state: dict[str, torch.Tensor] = {}
    for name in source.names():
        for pattern, handler in rules:
            match = pattern.fullmatch(name)
            if match:
                state.update(handler(match, source.take(name)))
                break
    check_against(state, config)
    return state


def check_against(state: dict[str, torch.Tensor], config: InternVLConfig) -> None:
    """The converted tensors must be exactly the parameters of the native model, shape for shape."""
    from transformers import InternVLForConditionalGeneration

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in InternVLForConditionalGeneration(config).state_dict().items()}
    problems = [f"missing {k} {shape}" for k, shape in expected.items() if k not in state]
    problems += [f"unexpected {k} {tuple(t.shape)}" for k, t in state.items() if k not in expected]
    problems += [
        f"{k}: converted {tuple(t.shape)}, the model needs {expected[k]}"
        for k, t in state.items()
        if k in expected and tuple(t.shape) != expected[k]
    ]
    if problems:
        listing = "\n  ".join(sorted(problems)[:40])
        raise ConversionError(f"the converted weights do not fit transformers' InternVL model:\n  {listing}")
