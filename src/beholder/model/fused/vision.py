"""InternViT (InternVL's vision tower) with packed weights: one q/k/v matmul, the layer scales folded into the
output projections, bias + GELU and the residual adds as matmul epilogues (beholder.model.fused.linear).

The same maths as transformers' InternVLVisionLayer, which stays the source of truth (tests compare the two on tiny
random towers): pre-norm attention and MLP, each scaled per channel by its layer scale before its residual add; the
attention kernel is the one transformers would call (config._attn_implementation, SDPA by default).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.internvl.modeling_internvl import InternVLVisionLayer, eager_attention_forward

from beholder.model.fused.linear import ACTIVATIONS, FusedLinear


class FusedInternVLVisionLayer(InternVLVisionLayer):
    """A drop-in for one InternVLVisionLayer (a subclass, so transformers' hidden-state capture still finds it)."""

    is_causal = False  # read by the attention functions, as on transformers' attention module

    def __init__(self, layer: InternVLVisionLayer):
        nn.Module.__init__(self)  # not InternVLVisionLayer.__init__: it would allocate the weights packed here
        attention, mlp = layer.attention, layer.mlp
        self.config = attention.config
        self.num_heads, self.head_dim, self.scaling = attention.num_heads, attention.head_dim, attention.scale
        self.layernorm_before, self.layernorm_after = layer.layernorm_before, layer.layernorm_after
        self.q_norm, self.k_norm = attention.q_norm, attention.k_norm  # identities unless use_qk_norm (InternViT-6B)
        self.qkv = FusedLinear.pack(attention.q_proj, attention.k_proj, attention.v_proj)
        self.projection = FusedLinear.pack(attention.projection_layer, scale=layer.lambda_1)
        self.fc1 = FusedLinear.pack(mlp.fc1, activation=ACTIVATIONS[self.config.hidden_act])
        self.fc2 = FusedLinear.pack(mlp.fc2, scale=layer.lambda_2)

    @staticmethod
    def fusable(layer: nn.Module) -> bool:
        return (
            layer.attention.config.hidden_act in ACTIVATIONS
            and layer.lambda_2 is not None
            and isinstance(layer.attention.projection_dropout, nn.Identity)
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(tiles, tokens, width) -> the same shape."""
        batch, length, width = hidden_states.shape
        q, k, v = self.qkv(self.layernorm_before(hidden_states)).view(batch, length, 3, width).unbind(2)
        q, k = self.q_norm(q), self.k_norm(k)
        heads = (batch, length, self.num_heads, self.head_dim)
        q, k, v = (t.reshape(heads).transpose(1, 2) for t in (q, k, v))  # (tiles, heads, tokens, head_dim)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        attended, _ = attend(self, q, k, v, None, dropout=0.0, scaling=self.scaling, is_causal=False)
        hidden_states = self.projection(attended.reshape(batch, length, width), residual=hidden_states)
        return self.fc2(self.fc1(self.layernorm_after(hidden_states)), residual=hidden_states)
