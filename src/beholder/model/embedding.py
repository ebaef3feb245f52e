"""Image-embedding backbones: a CLIP or SigLIP image tower whose read point is the pooled image embedding.

  clip    CLIPVisionModelWithProjection: the projected CLS embedding, what CLIPModel.get_image_features and OpenAI's
          `encode_image` give (LAION's aesthetic predictors read CLIP ViT-L/14's, 768 wide)
  siglip  SiglipVisionModel: the attention-pooled embedding (pooler_output), what SiglipModel.get_image_features gives
          (aesthetic-predictor-v2.5 reads so400m-patch14-384's, 1152 wide)
Both take one square view per image (crop or squash), so every image of a batch has the same shape.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import CLIPVisionModelWithProjection, PreTrainedModel, SiglipVisionModel

from beholder.model.backbones import Backbone, Visual
from beholder.preprocess import PreprocessConfig


class EmbeddingBackbone(Backbone):
    """An image tower: images -> (B, D) embeddings. Subclasses name the transformers class and its output."""

    modes = ("crop", "squash")
    reads_prompt = False
    output: ClassVar[str] = "pooler_output"  # the field of the model's output that holds the embedding

    def __init__(self, model: PreTrainedModel, preprocess: PreprocessConfig):
        super().__init__(model, preprocess)
        if model.config.image_size != preprocess.image_size:
            raise ValueError(
                f"preprocess.image_size={preprocess.image_size} but the image tower takes {model.config.image_size}"
            )

    @property
    def feature_size(self) -> int:
        """Width of the embedding."""
        return getattr(self.model.config, "projection_dim", None) or self.model.config.hidden_size

    def raw_visual(self, image: Image.Image) -> Visual:
        return Visual(self.square_views(image), n_tokens=0, key=())

    def collate(self, visuals: list[Visual]) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.from_numpy(np.concatenate([v.pixels for v in visuals]))}

    def features(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """Collated images -> (B, D) embeddings."""
        return getattr(self.model(**images), self.output)


class CLIPBackbone(EmbeddingBackbone):
    hf_class = CLIPVisionModelWithProjection
    output = "image_embeds"


class SiglipBackbone(EmbeddingBackbone):
    hf_class = SiglipVisionModel
    output = "pooler_output"
