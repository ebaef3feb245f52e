"""EmbeddingModel: an image tower (CLIP, SigLIP) + a regression head on its embedding, e.g. LAION's aesthetic
predictor (CLIP ViT-L/14, L2-normalised, MLP 768 -> 1024 -> 128 -> 64 -> 16 -> 1) or aesthetic-predictor-v2.5.

It has no prompt and one read point, the image embedding, so one forward pass gives its score; it offers the same
scoring interface as AestheticModel (visuals -> HeadOutputs -> final score), so a Scorer runs either.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from beholder.config import ModelConfig
from beholder.model.adapters import adapter_for
from beholder.model.backbones import Visual
from beholder.model.embedding import EmbeddingBackbone
from beholder.model.heads import AestheticHeads, HeadOutputs


class EmbeddingModel(nn.Module):
    tokenizer = None  # nothing to tokenise

    def __init__(self, hf_model: PreTrainedModel, config: ModelConfig):
        super().__init__()
        adapter = adapter_for(config.backbone)
        if not issubclass(adapter, EmbeddingBackbone):
            raise ValueError(f"backbone {config.backbone!r} is not an image-embedding backbone")
        heads = config.heads
        if heads.regression is None or heads.level or heads.expert or heads.metavoter or heads.fast != "regression":
            raise ValueError(
                f"an image-embedding model scores with one regression head (heads.fast='regression'); {config.name} "
                "asks for the level, expert or MetaVoter head, which read a language model"
            )
        self.config = config
        self.hf_model = hf_model
        self.weights_files: tuple[Path, ...] = ()  # the files its weights were loaded from (set by load_model)
        self.backbone: EmbeddingBackbone = adapter(hf_model, config.preprocess)
        self.heads = AestheticHeads(self.backbone.feature_size, heads, None)

    @property
    def device(self) -> torch.device:
        return self.hf_model.device

    @torch.inference_mode()
    def embed(self, visuals: list[Visual]) -> torch.Tensor:
        """(B, D) image embeddings, as the image tower gives them (before any normalisation of the head)."""
        images = {k: t.to(self.device) for k, t in self.backbone.collate(visuals).items()}
        images["pixel_values"] = images["pixel_values"].to(self.hf_model.dtype)
        return self.backbone.features(images)

    @torch.inference_mode()
    def score_fast(self, visuals: list[Visual]) -> HeadOutputs:
        """One forward pass of the image tower, then the regression head on the embedding."""
        return HeadOutputs(regression=self.heads.regression_score(self.embed(visuals), self.config.scale))

    def final_score(self, out: HeadOutputs) -> torch.Tensor:
        return out.final(self.config.heads.fast)

    def annotate(self, visuals: list[Visual], **generate_kwargs) -> list[str]:
        raise ValueError(f"{self.config.name} has no language model to write an annotation with")
