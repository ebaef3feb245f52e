"""A faster forward for the backbones beholder runs, swapped in at load time: `fuse(model)`.

Each transformers layer of a kind `_fusers` lists is replaced by a fused equivalent holding packed weights
(q/k/v and gate/up in one matmul each, layer scales folded into the weights, bias + activation + residual as matmul
epilogues on oneDNN): the same maths in fewer, larger kernels that write each output once. Layers of other kinds
keep transformers' forward. The fused layers subclass the ones they replace, so transformers' hidden-state capture
and `isinstance` checks still see them.

Inference only: packed weights take no gradients, and a fused model is not saved (its tensors are not the
checkpoint's); on CPU its weights are prepacked for oneDNN, so it is fused on its final device and dtype and stays
there. `beholder.load(..., fused=False)` / `--no-fuse` keeps transformers' layers.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

from torch import nn

from beholder.model.fused.decoder import fused_decoder_class
from beholder.model.fused.linear import FusedLinear
from beholder.model.fused.vision import FusedInternVLVisionLayer


@cache
def _fusers() -> dict[type[nn.Module], type[nn.Module]]:
    """transformers layer class -> its fused replacement, built from an instance: `Fused(layer)`."""
    from transformers.models.internvl.modeling_internvl import InternVLVisionLayer
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLDecoderLayer
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLDecoderLayer
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextDecoderLayer

    decoders = (Qwen2DecoderLayer, LlamaDecoderLayer, Qwen2VLDecoderLayer, Qwen2_5_VLDecoderLayer, Qwen3VLTextDecoderLayer)
    fusers: dict[type[nn.Module], type[nn.Module]] = {InternVLVisionLayer: FusedInternVLVisionLayer}
    fusers.update({cls: fused_decoder_class(cls) for cls in decoders})
    return fusers


def fuse(model: nn.Module, *, prepack: bool = True) -> dict[str, int]:
    """Replace every fusable layer of `model` (a transformers model in eval mode, on its final device and dtype) by
    its fused equivalent, in place; returns how many layers of each kind were fused (empty: none).

    prepack: on CPU, reorder the fused weights once for oneDNN (FusedLinear.prepack); the model can then no longer
    be moved, cast or deep-copied."""
    if model.training:
        raise ValueError("fuse() is for inference: put the model in eval mode first (fused layers take no gradients)")
    fusers, fused = _fusers(), Counter()
    for name, layer in list(model.named_modules()):
        fused_class = fusers.get(type(layer))  # exact types: a fused layer is never fused again
        if fused_class is None or not fused_class.fusable(layer):
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, fused_class(layer).eval())
        fused[type(layer).__name__] += 1
    for module in model.modules() if prepack else ():
        if isinstance(module, FusedLinear):
            module.prepack()
    return dict(sorted(fused.items()))
