"""The backbone adapters by name, as beholder.json's `backbone` names them (beholder.config.BackboneName)."""

from __future__ import annotations

from beholder.model.backbones import Backbone, InternVLBackbone, QwenVLBackbone
from beholder.model.embedding import CLIPBackbone, SiglipBackbone

ADAPTERS: dict[str, type[Backbone]] = {
    "internvl": InternVLBackbone,
    "qwen2_vl": QwenVLBackbone,
    "qwen2_5_vl": QwenVLBackbone,
    "qwen3_vl": QwenVLBackbone,
    "clip": CLIPBackbone,
    "siglip": SiglipBackbone,
}


def adapter_for(name: str) -> type[Backbone]:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(ADAPTERS)}") from None
