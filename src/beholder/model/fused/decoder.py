"""Decoder layers of the language models beholder runs, with packed weights: one q/k/v matmul, gate and up packed in
one weight with the activation and the product as matmul epilogues, and the two residual adds as epilogues of the
o_proj and down_proj matmuls (beholder.model.fused.linear).

One implementation serves every pre-norm decoder layer of the Llama pattern that beholder's chat backbones use:
Qwen2 and Llama (InternVL's Qwen2 and InternLM2 language models), Qwen2-VL, Qwen2.5-VL and Qwen3-VL (whose
multimodal RoPE is already folded into the cos/sin the model hands each layer; Qwen3-VL adds a per-head q/k RMSNorm).
Rotary embedding, KV-cache update and the attention kernel are transformers' own functions, called as its layer
calls them, so masks, GQA and caches behave the same; transformers' layer stays the source of truth (tests).
"""

from __future__ import annotations

import inspect
from functools import cache

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from beholder.model.fused.linear import ACTIVATIONS, FusedGatedLinear, FusedLinear


class FusedDecoderLayer(nn.Module):
    """Mixed in front of a transformers decoder-layer class (fused_decoder_class), so the fused layer is still an
    instance of it and transformers' hidden-state capture still finds it."""

    is_causal = True  # read by the attention functions, as on transformers' attention module

    def __init__(self, layer: nn.Module):
        nn.Module.__init__(self)  # not the transformers layer's __init__: it would allocate the weights packed here
        attention, mlp = layer.self_attn, layer.mlp
        self.config = attention.config
        self.layer_idx = attention.layer_idx
        self.head_dim, self.scaling = attention.head_dim, attention.scaling
        self.num_key_value_groups = attention.num_key_value_groups
        self.sliding_window = getattr(attention, "sliding_window", None)
        self.input_layernorm, self.post_attention_layernorm = layer.input_layernorm, layer.post_attention_layernorm
        # Qwen3-VL normalises each head of q and k; the others have no such norms
        self.q_norm, self.k_norm = getattr(attention, "q_norm", nn.Identity()), getattr(attention, "k_norm", nn.Identity())
        self.q_size, self.kv_size = attention.q_proj.out_features, attention.k_proj.out_features
        self.qkv = FusedLinear.pack(attention.q_proj, attention.k_proj, attention.v_proj)
        self.o_proj = FusedLinear.pack(attention.o_proj)
        self.gate_up = FusedGatedLinear.pack(mlp.gate_proj, mlp.up_proj, activation=ACTIVATIONS[self.config.hidden_act])
        self.down_proj = FusedLinear.pack(mlp.down_proj)
        module = inspect.getmodule(type(layer))
        self.rotate = module.apply_rotary_pos_emb  # the family's own RoPE function
        self.attention_default = module.eager_attention_forward

    @staticmethod
    def fusable(layer: nn.Module) -> bool:
        return layer.self_attn.config.hidden_act in ACTIVATIONS

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        use_cache: bool | None = False,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """(B, S, hidden) -> (B, S, hidden); the arguments are those transformers' decoder layers take."""
        # what transformers' layers hand their attention module, which passes it on to the cache and the kernel
        kwargs.update(position_ids=position_ids, use_cache=use_cache)
        hidden_states = self.attend(
            self.input_layernorm(hidden_states), hidden_states, attention_mask, cache, position_embeddings, **kwargs
        )
        return self.down_proj(self.gate_up(self.post_attention_layernorm(hidden_states)), residual=hidden_states)

    def attend(self, normed, residual, attention_mask, cache, position_embeddings, **kwargs) -> torch.Tensor:
        """residual + o_proj(self-attention over `normed`)."""
        shape = (*normed.shape[:-1], -1, self.head_dim)
        q, k, v = self.qkv(normed).split((self.q_size, self.kv_size, self.kv_size), -1)
        q = self.q_norm(q.reshape(shape)).transpose(1, 2)  # (B, heads, S, head_dim)
        k = self.k_norm(k.reshape(shape)).transpose(1, 2)
        v = v.reshape(shape).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = self.rotate(q, k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, kwargs=kwargs)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, self.attention_default)
        window = {"sliding_window": self.sliding_window} if self.sliding_window is not None else {}
        attended, _ = attend(self, q, k, v, attention_mask, dropout=0.0, scaling=self.scaling, **window, **kwargs)
        return self.o_proj(attended.reshape(*normed.shape[:-1], -1), residual=residual)


@cache
def fused_decoder_class(base: type[nn.Module]) -> type[nn.Module]:
    """The fused subclass of a transformers decoder-layer class (one per class, made once)."""
    return type(f"Fused{base.__name__}", (FusedDecoderLayer, base), {"__doc__": f"{base.__name__}, fused."})

