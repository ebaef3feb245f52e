"""Tiny random checkpoints in InternVL's "chat" layout, and an independent forward pass that reads them directly.

The checkpoints use the tensor names and shapes of the public InternVL chat code (InternVisionModel, mlp1,
Qwen2ForCausalLM or InternLM2ForCausalLM) and HumanAesExpert-style heads, with a chat config.json and the tiny
tokenizer of beholder.testing. The reference forward is written from the original modules' structure in plain
torch (fused qkv of InternViT, layer scale, pixel shuffle v2, grouped wqkv of InternLM2, rotate-half RoPE): it
shares no code with transformers or the converter, so agreeing with it to 1e-4 checks the conversion.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

VISION = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
          "image_size": 56, "patch_size": 14}
TEXT = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}
ROPE_THETA = 10000.0
EXPERT_FFN = 8  # hidden width of the parent FFNs of the expert head
VOTER = 6  # MetaVoter width


def _randn(generator: torch.Generator, *shape: int, scale: float = 0.1, mean: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale + mean


def vision_tensors(g: torch.Generator, *, qk_norm: bool, rms: bool) -> dict[str, torch.Tensor]:
    c, n_patches = VISION["hidden_size"], (VISION["image_size"] // VISION["patch_size"]) ** 2
    t = {
        "vision_model.embeddings.class_embedding": _randn(g, 1, 1, c),
        "vision_model.embeddings.patch_embedding.weight": _randn(g, c, 3, 14, 14, scale=0.05),
        "vision_model.embeddings.patch_embedding.bias": _randn(g, c),
        "vision_model.embeddings.position_embedding": _randn(g, 1, n_patches + 1, c),
    }
    for i in range(VISION["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        t.update({
            p + "attn.qkv.weight": _randn(g, 3 * c, c, scale=0.2), p + "attn.qkv.bias": _randn(g, 3 * c),
            p + "attn.proj.weight": _randn(g, c, c, scale=0.2), p + "attn.proj.bias": _randn(g, c),
            p + "ls1": _randn(g, c, mean=0.5), p + "ls2": _randn(g, c, mean=0.5),
            p + "mlp.fc1.weight": _randn(g, VISION["intermediate_size"], c, scale=0.2),
            p + "mlp.fc1.bias": _randn(g, VISION["intermediate_size"]),
            p + "mlp.fc2.weight": _randn(g, c, VISION["intermediate_size"], scale=0.2),
            p + "mlp.fc2.bias": _randn(g, c),
        })
        for norm in ("norm1", "norm2"):
            t[p + f"{norm}.weight"] = _randn(g, c, mean=1.0)
            if not rms:
                t[p + f"{norm}.bias"] = _randn(g, c)
        if qk_norm:
            t[p + "attn.q_norm.weight"] = _randn(g, c, mean=1.0)
            t[p + "attn.k_norm.weight"] = _randn(g, c, mean=1.0)
    h, c4 = TEXT["hidden_size"], 4 * c
    t.update({
        "mlp1.0.weight": _randn(g, c4, mean=1.0), "mlp1.0.bias": _randn(g, c4),
        "mlp1.1.weight": _randn(g, h, c4, scale=0.2), "mlp1.1.bias": _randn(g, h),
        "mlp1.3.weight": _randn(g, h, h, scale=0.2), "mlp1.3.bias": _randn(g, h),
    })
    return t


def _head_dim() -> int:
    return TEXT["hidden_size"] // TEXT["num_attention_heads"]


def qwen2_tensors(g: torch.Generator, vocab: int) -> dict[str, torch.Tensor]:
    h, f, d = TEXT["hidden_size"], TEXT["intermediate_size"], _head_dim()
    kv = TEXT["num_key_value_heads"] * d
    t = {
        "language_model.model.embed_tokens.weight": _randn(g, vocab, h, scale=0.5),
        "language_model.model.norm.weight": _randn(g, h, mean=1.0),
        "language_model.lm_head.weight": _randn(g, vocab, h, scale=0.5),
    }
    for i in range(TEXT["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        t.update({
            p + "self_attn.q_proj.weight": _randn(g, h, h, scale=0.2), p + "self_attn.q_proj.bias": _randn(g, h),
            p + "self_attn.k_proj.weight": _randn(g, kv, h, scale=0.2), p + "self_attn.k_proj.bias": _randn(g, kv),
            p + "self_attn.v_proj.weight": _randn(g, kv, h, scale=0.2), p + "self_attn.v_proj.bias": _randn(g, kv),
            p + "self_attn.o_proj.weight": _randn(g, h, h, scale=0.2),
            p + "mlp.gate_proj.weight": _randn(g, f, h, scale=0.2),
            p + "mlp.up_proj.weight": _randn(g, f, h, scale=0.2),
            p + "mlp.down_proj.weight": _randn(g, h, f, scale=0.2),
            p + "input_layernorm.weight": _randn(g, h, mean=1.0),
            p + "post_attention_layernorm.weight": _randn(g, h, mean=1.0),
        })
    return t


def internlm2_tensors(g: torch.Generator, vocab: int) -> dict[str, torch.Tensor]:
    h, f, d = TEXT["hidden_size"], TEXT["intermediate_size"], _head_dim()
    rows = (TEXT["num_attention_heads"] + 2 * TEXT["num_key_value_heads"]) * d
    t = {
        "language_model.model.tok_embeddings.weight": _randn(g, vocab, h, scale=0.5),
        "language_model.model.norm.weight": _randn(g, h, mean=1.0),
        "language_model.output.weight": _randn(g, vocab, h, scale=0.5),
    }
    for i in range(TEXT["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        t.update({
            p + "attention.wqkv.weight": _randn(g, rows, h, scale=0.2),
            p + "attention.wo.weight": _randn(g, h, h, scale=0.2),
            p + "feed_forward.w1.weight": _randn(g, f, h, scale=0.2),
            p + "feed_forward.w3.weight": _randn(g, f, h, scale=0.2),
            p + "feed_forward.w2.weight": _randn(g, h, f, scale=0.2),
            p + "attention_norm.weight": _randn(g, h, mean=1.0),
            p + "ffn_norm.weight": _randn(g, h, mean=1.0),
        })
    return t


def head_tensors(g: torch.Generator) -> dict[str, torch.Tensor]:
    """HumanAesExpert-style heads under the names the released code uses, plus a MetaVoter."""
    h, e, v = TEXT["hidden_size"], EXPERT_FFN, VOTER
    t = {
        "language_model.lm_regression_head.weight": _randn(g, 1, h),
        "language_model.lm_regression_head.bias": _randn(g, 1),
        "language_model.expert_head.leaf_layer.weight": _randn(g, 9, h, scale=0.3),
        "language_model.expert_head.leaf_layer.bias": _randn(g, 9),
    }
    for name, n_in in (("face_ffn", 5), ("general_appearance_ffn", 3), ("overall_ffn", 3)):
        p = f"language_model.expert_head.{name}."
        t.update({p + "0.weight": _randn(g, e, n_in, scale=0.5), p + "0.bias": _randn(g, e),
                  p + "2.weight": _randn(g, 1, e, scale=0.5), p + "2.bias": _randn(g, 1)})
    t.update({
        "metavoter.net.0.weight": _randn(g, v, 3, scale=0.5), "metavoter.net.0.bias": _randn(g, v),
        "metavoter.net.1.weight": _randn(g, v, mean=1.0), "metavoter.net.1.bias": _randn(g, v),
        "metavoter.net.1.running_mean": _randn(g, v), "metavoter.net.1.running_var": _randn(g, v).abs() + 0.5,
        "metavoter.net.1.num_batches_tracked": torch.tensor(100),
        "metavoter.net.3.weight": _randn(g, 1, v, scale=0.5), "metavoter.net.3.bias": _randn(g, 1),
    })
    return t


def chat_config(llm: str, vocab: int, *, template: str, qk_norm: bool, rms: bool) -> dict:
    vision = {**VISION, "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "qkv_bias": True,
              "qk_normalization": qk_norm, "norm_type": "rms_norm" if rms else "layer_norm", "layer_norm_eps": 1e-6,
              "hidden_act": "gelu", "use_flash_attn": True, "drop_path_rate": 0.0}
    text = {**TEXT, "vocab_size": vocab, "rms_norm_eps": 1e-6, "rope_theta": ROPE_THETA, "hidden_act": "silu",
            "max_position_embeddings": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    if llm == "qwen2":
        text.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2", use_sliding_window=False)
    else:  # InternLM2 names the dynamic-NTK scaling the same way; it only acts beyond max_position_embeddings
        text.update(architectures=["InternLM2ForCausalLM"], model_type="internlm2", bias=False,
                    rope_scaling={"type": "dynamic", "factor": 2.0},
                    auto_map={"AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"})
    return {
        "architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "template": template,
        "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"},
        "select_layer": -1, "ps_version": "v2", "downsample_ratio": 0.5, "force_image_size": VISION["image_size"],
        "dynamic_image_size": True, "use_thumbnail": True, "max_dynamic_patch": 12, "min_dynamic_patch": 1,
        "vision_config": vision, "llm_config": text, "torch_dtype": "bfloat16",
    }


def write_checkpoint(folder: Path, tokenizer, *, llm: str, template: str, heads: dict | None, seed: int = 0,
                     qk_norm: bool = False, rms: bool = False, extra: dict | None = None) -> dict:
    """Write a chat-layout checkpoint (two safetensors shards, config.json, tokenizer); return its tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    vision = vision_tensors(g, qk_norm=qk_norm, rms=rms)
    language = qwen2_tensors(g, vocab) if llm == "qwen2" else internlm2_tensors(g, vocab)
    language.update(heads or {})
    language.update(extra or {})
    save_file(vision, folder / "model-00001-of-00002.safetensors", metadata={"format": "pt"})
    save_file(language, folder / "model-00002-of-00002.safetensors", metadata={"format": "pt"})
    config = chat_config(llm, vocab, template=template, qk_norm=qk_norm, rms=rms)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(folder)
    return {**vision, **language}


# ---------------------------------------------------------------------------------------------------------------
# the reference forward, from the chat-layout tensors


def _layer_norm(x, t, p, rms):
    if rms:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * t[p + ".weight"]
    return F.layer_norm(x, x.shape[-1:], t[p + ".weight"], t[p + ".bias"], eps=1e-6)


def _rms(x, weight, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def intern_vit(t: dict, pixels: torch.Tensor) -> torch.Tensor:
    """InternVisionModel: (n, 3, S, S) -> last hidden state (n, 1 + patches, C). InternViT-6B's variant (RMS
    norms, q/k norms) where its tensors are present, InternViT-300M's (LayerNorm, no q/k norm) otherwise."""
    qk_norm = "vision_model.encoder.layers.0.attn.q_norm.weight" in t
    rms = "vision_model.encoder.layers.0.norm1.bias" not in t
    c, heads = VISION["hidden_size"], VISION["num_attention_heads"]
    d = c // heads
    x = F.conv2d(pixels, t["vision_model.embeddings.patch_embedding.weight"],
                 t["vision_model.embeddings.patch_embedding.bias"], stride=VISION["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    cls = t["vision_model.embeddings.class_embedding"].expand(len(x), -1, -1)
    x = torch.cat([cls, x], 1) + t["vision_model.embeddings.position_embedding"]
    n, length, _ = x.shape
    for i in range(VISION["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        h = _layer_norm(x, t, p + "norm1", rms)
        qkv = h @ t[p + "attn.qkv.weight"].T + t[p + "attn.qkv.bias"]
        q, k, v = qkv.reshape(n, length, 3, heads, d).permute(2, 0, 3, 1, 4)
        if qk_norm:  # InternRMSNorm over all heads together: (n, heads, L, d) -> (n, L, heads * d) and back
            q, k = (_rms(x.transpose(1, 2).flatten(-2), t[p + f"attn.{name}.weight"]).view(n, length, heads, d)
                    .transpose(1, 2) for x, name in ((q, "q_norm"), (k, "k_norm")))
        attn = ((q * d**-0.5) @ k.transpose(-2, -1)).softmax(-1)
        out = (attn @ v).transpose(1, 2).reshape(n, length, c)
        x = x + (out @ t[p + "attn.proj.weight"].T + t[p + "attn.proj.bias"]) * t[p + "ls1"]
        h = _layer_norm(x, t, p + "norm2", rms)
        h = F.gelu(h @ t[p + "mlp.fc1.weight"].T + t[p + "mlp.fc1.bias"])
        h = h @ t[p + "mlp.fc2.weight"].T + t[p + "mlp.fc2.bias"]
        x = x + h * t[p + "ls2"]
    return x


def pixel_shuffle_v2(x: torch.Tensor, scale: float = 0.5) -> torch.Tensor:
    n, w, h, c = x.shape
    x = x.view(n, w, int(h * scale), int(c / scale)).permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale), int(w * scale), int(c / (scale * scale)))
    return x.permute(0, 2, 1, 3).contiguous()


def image_features(t: dict, pixels: torch.Tensor) -> torch.Tensor:
    """InternVLChatModel.extract_feature + mlp1: (n, 3, S, S) -> (n, tokens per tile, hidden)."""
    x = intern_vit(t, pixels)[:, 1:]
    side = int(math.sqrt(x.shape[1]))
    x = pixel_shuffle_v2(x.reshape(len(x), side, side, -1))
    x = x.reshape(len(x), -1, x.shape[-1])
    x = F.layer_norm(x, x.shape[-1:], t["mlp1.0.weight"], t["mlp1.0.bias"], eps=1e-5)
    x = F.gelu(x @ t["mlp1.1.weight"].T + t["mlp1.1.bias"])
    return x @ t["mlp1.3.weight"].T + t["mlp1.3.bias"]


def _rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1]
    inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    freqs = positions[:, None].float() * inv_freq
    emb = torch.cat([freqs, freqs], -1)
    half = torch.cat([-x[..., d // 2 :], x[..., : d // 2]], -1)
    return x * emb.cos() + half * emb.sin()


def _attention(q, k, v, heads, kv_heads):
    """q (L, heads, d), k/v (L, kv_heads, d): causal attention, query head i reading KV head i // group."""
    length, _, d = q.shape
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    positions = torch.arange(length)
    q, k = _rotate(q.transpose(0, 1), positions), _rotate(k.transpose(0, 1), positions)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    return (scores.softmax(-1) @ v.transpose(0, 1)).transpose(0, 1).reshape(length, heads * d)


def language_model(t: dict, embeds: torch.Tensor, llm: str) -> torch.Tensor:
    """Qwen2 / InternLM2 decoder over (L, hidden) input embeddings -> final normed hidden states (L, hidden)."""
    heads, kv_heads, d = TEXT["num_attention_heads"], TEXT["num_key_value_heads"], _head_dim()
    x, length = embeds, len(embeds)
    for i in range(TEXT["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        if llm == "qwen2":
            h = _rms(x, t[p + "input_layernorm.weight"])
            q, k, v = (h @ t[p + f"self_attn.{n}_proj.weight"].T + t[p + f"self_attn.{n}_proj.bias"] for n in "qkv")
            out = _attention(q.view(length, heads, d), k.view(length, kv_heads, d), v.view(length, kv_heads, d),
                             heads, kv_heads)
            x = x + out @ t[p + "self_attn.o_proj.weight"].T
            h = _rms(x, t[p + "post_attention_layernorm.weight"])
            gate, up, down = (t[p + f"mlp.{n}_proj.weight"] for n in ("gate", "up", "down"))
        else:  # InternLM2Attention: rearrange 'b q (h gs d) -> b q h gs d', gs = groups + 2
            h = _rms(x, t[p + "attention_norm.weight"])
            qkv = (h @ t[p + "attention.wqkv.weight"].T).view(length, kv_heads, heads // kv_heads + 2, d)
            q = qkv[:, :, : heads // kv_heads].reshape(length, heads, d)
            out = _attention(q, qkv[:, :, -2], qkv[:, :, -1], heads, kv_heads)
            x = x + out @ t[p + "attention.wo.weight"].T
            h = _rms(x, t[p + "ffn_norm.weight"])
            gate, up, down = (t[p + f"feed_forward.{n}.weight"] for n in ("w1", "w3", "w2"))
        x = x + (F.silu(h @ gate.T) * (h @ up.T)) @ down.T
    return _rms(x, t["language_model.model.norm.weight"])


def last_hidden(t: dict, ids: list[int], pixels: torch.Tensor, image_token_id: int, llm: str) -> torch.Tensor:
    """The chat model's last-layer hidden state at the last position of `ids` (image tokens filled in order)."""
    ids_t = torch.tensor(ids)
    table = t["language_model.model." + ("embed_tokens" if llm == "qwen2" else "tok_embeddings") + ".weight"]
    embeds = table[ids_t].clone()
    embeds[ids_t == image_token_id] = image_features(t, pixels).reshape(-1, embeds.shape[-1])
    return language_model(t, embeds, llm)[-1]


def lm_head(t: dict, llm: str) -> torch.Tensor:
    return t["language_model.lm_head.weight" if llm == "qwen2" else "language_model.output.weight"]


def expert_head(t: dict, h: torch.Tensor) -> dict[str, torch.Tensor]:
    """Leaves, then each parent FFN (Linear -> GELU -> Linear) on its children, overall on (env, face, app)."""
    def ffn(name, x):
        p = f"language_model.expert_head.{name}."
        return (F.gelu(x @ t[p + "0.weight"].T + t[p + "0.bias"]) @ t[p + "2.weight"].T + t[p + "2.bias"])[0]

    leaves = h @ t["language_model.expert_head.leaf_layer.weight"].T + t["language_model.expert_head.leaf_layer.bias"]
    face, appearance = ffn("face_ffn", leaves[:5]), ffn("general_appearance_ffn", leaves[5:8])
    overall = ffn("overall_ffn", torch.stack([leaves[8], face, appearance]))
    return {"leaves": leaves, "facial_aesthetic": face, "general_appearance_aesthetic": appearance, "overall": overall}


def metavoter(t: dict, scores: torch.Tensor) -> torch.Tensor:
    """MLP(3 -> BatchNorm (eval) -> ReLU -> 1) on (S'_LM, S_reg, S_exp)."""
    p = "metavoter.net."
    z = scores @ t[p + "0.weight"].T + t[p + "0.bias"]
    z = (z - t[p + "1.running_mean"]) / torch.sqrt(t[p + "1.running_var"] + 1e-5) * t[p + "1.weight"] + t[p + "1.bias"]
    return (z.clamp(min=0) @ t[p + "3.weight"].T + t[p + "3.bias"])[0]


# ---------------------------------------------------------------------------------------------------------------
# the original prompt assembly (InternVL conversation templates, sep_style MPT)

SEPARATORS = {"Hermes-2": "<|im_end|>", "internlm2-chat": "<|im_end|>", "internvl2_5": "<|im_end|>\n"}


def original_query(template: str, system: str, question: str, n_image_tokens: int, *, swift: bool = False,
                   after_image: str = "\n") -> str:
    """The string InternVLChatModel.chat()/score() tokenises: '<image>\\n' + question in the MPT conversation
    layout (the system turn written even for an empty message), '<image>' replaced by <img><IMG_CONTEXT>...</img>;
    the assistant turn left open. swift: HumanAesExpert's training layout, where the image becomes
    <img>...</img> followed by a newline. after_image: what the question puts after '<image>' (UniPercept's
    score() writes '<image>Rate ...', nothing)."""
    sep = SEPARATORS[template]
    query = f"<|im_start|>system\n{system}{sep}<|im_start|>user\n<image>{after_image}{question}{sep}<|im_start|>assistant\n"
    image = "<img>" + "<IMG_CONTEXT>" * n_image_tokens + "</img>" + ("\n" if swift else "")
    return query.replace("<image>", image, 1)


# ---------------------------------------------------------------------------------------------------------------
# a SentencePiece model file, written by hand (protobuf wire format) for the InternLM2 tokenizer path


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value) -> bytes:
    if isinstance(value, float):
        return _varint(number << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, (bool, int)):
        return _varint(number << 3) + _varint(int(value))
    value = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def sentencepiece_model(pieces: list[tuple[str, float, int]], *, add_dummy_prefix: bool) -> bytes:
    """A BPE ModelProto with byte fallback; pieces are (text, score, type)."""
    data = b"".join(_field(1, _field(1, p) + _field(2, float(s)) + _field(3, k)) for p, s, k in pieces)
    data += _field(2, _field(3, 2) + _field(35, True) + _field(40, 0) + _field(41, 1) + _field(42, 2) + _field(43, -1))
    return data + _field(3, _field(3, add_dummy_prefix) + _field(4, False) + _field(5, True))
