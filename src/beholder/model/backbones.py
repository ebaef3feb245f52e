"""Backbone adapters: the one small interface beholder needs from a transformers vision model.

The contract: an adapter turns an RGB image into visual inputs (CPU, thread-safe, in one of the preprocessing
modes it declares; `raw_visual` leaves the normalising of square views to `finish`, which may run on the model's
device), collates a batch of them, and its model turns the batch (and a prompt, where the model reads
one) into features at the read points, on which the heads run.

  ChatBackbone       image-text-to-text models (InternVL, Qwen-VL): `encode` runs a sequence that contains the
                     image placeholders and can keep its KV cache as a Context; `extend` runs a text continuation on
                     top of a Context and rewinds the cache afterwards, so one encoded image prefix serves any number
                     of questions. Everything a continuation needs (cache, prefix length, Qwen's RoPE offsets) lives
                     in the Context, never in the adapter. The read points are the last positions of the questions.
  EmbeddingBackbone  image towers (CLIP, SigLIP; beholder.model.embedding): the read point is the pooled image
                     embedding.
The registry of named adapters is beholder.model.adapters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, PreTrainedModel

from beholder.model.devices import to_device
from beholder.preprocess import SQUARE_VIEWS, PreprocessConfig, normalization, normalize, stack_views


@dataclass
class Visual:
    """One image's visual inputs, ready to collate."""

    # square views: (n_views, 3, S, S), float32 normalised, or uint8 as cut (Backbone.raw_visual: a quarter of the
    # bytes, normalised by Backbone.finish); qwen: (n_patches, C*T*P*P) float32
    pixels: np.ndarray
    n_tokens: int  # placeholder tokens this image occupies in the prompt (0 for a model without one)
    key: tuple  # batch grouping key: images with equal keys have equal prompt lengths and pixel shapes
    grid_thw: tuple[int, int, int] | None = None  # qwen: (t, h, w) patch grid


def normalize_tensor(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """beholder.preprocess.normalize in torch, on the device `pixels` (uint8 views (n, 3, H, W)) are on: the same
    float32 constants and the same two roundings (x * scale, then minus offset), so the same bits (tested)."""
    scale, offset = (torch.from_numpy(c).to(pixels.device).view(1, 3, 1, 1) for c in normalization(mean, std))
    return pixels.float().mul_(scale).sub_(offset)


@dataclass
class Context:
    """The encoded shared prefix of a batch: its KV cache and what a continuation needs to line up with it."""

    cache: Any  # transformers Cache with `length` positions per row
    length: int  # prefix tokens per row (equal across the batch: batches are grouped by Visual.key)
    rope_deltas: torch.Tensor | None = None  # qwen: (B, 1) offset of text positions after the image

    def rewind(self) -> None:
        """Drop whatever a continuation appended, back to the prefix."""
        extra = self.cache.get_seq_length() - self.length
        if extra:
            self.cache.crop(-extra)


class Backbone:
    """Adapter base: which preprocessing modes it takes, how its transformers model loads, and how pixels are made."""

    modes: tuple[str, ...] = ()  # the preprocessing modes this adapter makes pixels for
    hf_class: ClassVar[Any] = AutoModelForImageTextToText  # loads the model folder's transformers model
    reads_prompt: ClassVar[bool] = True  # whether the model reads text (and the folder carries a tokenizer)

    def __init__(self, model: PreTrainedModel, preprocess: PreprocessConfig):
        if preprocess.mode not in self.modes:
            raise ValueError(
                f"preprocess.mode {preprocess.mode!r} does not fit a {type(self).__name__}; it takes {list(self.modes)}"
            )
        self.model = model
        self.preprocess = preprocess

    def visual(self, image: Image.Image) -> Visual:
        """The image's visual inputs, ready to collate."""
        return self.finish(self.raw_visual(image))

    def raw_visual(self, image: Image.Image) -> Visual:
        """The image's visual inputs with the normalising of square views left to `finish`: uint8 views, a quarter
        of their float32 bytes (what distributed scoring carries from its decode tasks to its scoring actors)."""
        raise NotImplementedError

    def finish(self, visual: Visual) -> Visual:
        """A raw visual made ready to collate (its uint8 square views normalised); a finished one as it is."""
        if visual.pixels.dtype != np.uint8:
            return visual
        config = self.preprocess
        return dataclasses.replace(visual, pixels=normalize(visual.pixels, config.mean, config.std))

    def collate(self, visuals: list[Visual]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @property
    def normalises_on_device(self) -> bool:
        """Whether raw views go to the model as uint8 and are normalised there (on a GPU), not on the host."""
        return self.model.device.type == "cuda"

    def model_inputs(self, visuals: list[Visual]) -> dict[str, torch.Tensor]:
        """`collate`'s tensors on the model's device, pixel values in its dtype.

        Finished pixels are cast on the host before the copy (half the bytes to a GPU; float32 -> bfloat16 rounds
        the same there and here). To a GPU, a batch of raw visuals goes as uint8 (a quarter of float32's bytes) and
        is normalised there with `normalize`'s two float32 roundings, so to the bit what the host would give
        (tested). Raw visuals for a model on the CPU, or in a batch mixed with finished ones, are finished on the
        host (numpy's fused passes are cheaper than torch's there)."""
        device, dtype = self.model.device, self.model.dtype
        raw = [visual.pixels.dtype == np.uint8 for visual in visuals]
        if any(raw) and not (self.normalises_on_device and all(raw)):
            visuals = [self.finish(visual) for visual in visuals]
        images = self.collate(visuals)
        pixels = images.pop("pixel_values", None)
        moved = {name: to_device(tensor, device) for name, tensor in images.items()}
        if pixels is not None and pixels.dtype == torch.uint8:
            config = self.preprocess
            moved["pixel_values"] = normalize_tensor(to_device(pixels, device), config.mean, config.std).to(dtype)
        elif pixels is not None:
            moved["pixel_values"] = to_device(pixels.to(dtype), device)
        return moved

    def square_views(self, image: Image.Image) -> np.ndarray:
        """The preprocessing mode's square views of `image` as cut: (n_views, 3, S, S) uint8."""
        config = self.preprocess
        return stack_views(SQUARE_VIEWS[config.mode](config, image))


class ChatBackbone(Backbone):
    """An image-text-to-text model: subclasses set how pixels are made and how the base model is called."""

    def __init__(self, model: PreTrainedModel, preprocess: PreprocessConfig):
        super().__init__(model, preprocess)
        self.image_token_id: int = model.config.image_token_id

    @property
    def base(self) -> torch.nn.Module:
        return self.model.model  # the VLM without its LM head

    @property
    def lm_head(self) -> torch.nn.Linear:
        return self.model.get_output_embeddings()

    @property
    def hidden_size(self) -> int:
        return self.model.config.get_text_config().hidden_size

    def encode(
        self,
        input_ids: torch.Tensor,
        images: dict[str, torch.Tensor],
        keep_cache: bool = False,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Context | None]:
        """input_ids (B, L) with the image placeholders -> (last hidden state (B, L, hidden), Context or None).

        attention_mask (B, L), 1 on real tokens, for right-padded training batches of unequal rows (scoring
        batches never pad); rows may then hold different numbers of images' placeholders."""
        positions, rope_deltas = self._positions(input_ids, images, attention_mask)
        out = self.base(
            input_ids=input_ids, attention_mask=attention_mask, **images, **positions, use_cache=keep_cache
        )
        if not keep_cache:
            return out.last_hidden_state, None
        return out.last_hidden_state, Context(out.cache, input_ids.shape[1], rope_deltas)

    def extend(self, input_ids: torch.Tensor, context: Context) -> torch.Tensor:
        """input_ids (B, S) continuing the prefix in `context` -> last hidden state (B, S, hidden)."""
        offsets = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self._continue(input_ids, context, offsets)

    def extend_each(self, questions: Sequence[torch.Tensor], context: Context) -> list[torch.Tensor]:
        """Each of several continuations (B, S_i) of the prefix in `context`, in one forward pass -> each one's last
        hidden state (B, hidden), in order.

        The continuations sit side by side in one row per image: each starts at the position where the prefix ends,
        and a block-diagonal causal mask lets each token see the prefix and the earlier tokens of its own
        continuation only, so each gets what it would get alone (tested against one pass per continuation). Only
        attention kernels that take an arbitrary mask can do that (SDPA, eager); with others, one pass each."""
        implementation = self.model.config.get_text_config()._attn_implementation
        if len(questions) == 1 or implementation not in ("sdpa", "eager"):
            return [self.extend(ids, context)[:, -1] for ids in questions]
        device, lengths = questions[0].device, [ids.shape[1] for ids in questions]
        owner = torch.repeat_interleave(torch.arange(len(lengths), device=device), torch.tensor(lengths, device=device))
        offsets = torch.cat([torch.arange(n, device=device) for n in lengths])  # position after the prefix
        sees = (owner[:, None] == owner[None, :]) & (offsets[:, None] >= offsets[None, :])  # (S, S)
        prefix = torch.ones(len(offsets), context.length, dtype=torch.bool, device=device)
        mask = torch.cat([prefix, sees], dim=1)[None, None]  # (1, 1, S, prefix + S): True where a token may look
        if implementation == "eager":  # eager attention adds its mask to the scores
            dtype = self.model.dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill_(~mask, torch.finfo(dtype).min)
        hidden = self._continue(torch.cat(list(questions), dim=1), context, offsets, mask)
        ends = torch.tensor(lengths, device=device).cumsum(0) - 1
        return list(hidden[:, ends].unbind(1))

    def _continue(
        self, input_ids: torch.Tensor, context: Context, offsets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One forward pass of input_ids (B, S) on the cache in `context`, token j at position prefix + offsets[j]
        (under `mask`, or causal), the cache rewound afterwards -> last hidden state (B, S, hidden)."""
        try:
            out = self.base(
                input_ids=input_ids,
                attention_mask=mask,
                **self._continued_positions(input_ids, context, offsets),
                cache=context.cache,
                use_cache=True,
            )
        finally:
            context.rewind()
        return out.last_hidden_state

    def generation_inputs(self, input_ids: torch.Tensor, images: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Extra kwargs `generate` needs besides input_ids and the images."""
        return {}

    def _positions(
        self, input_ids: torch.Tensor, images: dict[str, torch.Tensor], attention_mask: torch.Tensor | None = None
    ) -> tuple[dict[str, Any], torch.Tensor | None]:
        """Extra forward kwargs for a sequence with images, and the RoPE offsets a continuation needs."""
        return {}, None  # 1-D RoPE: the model counts positions itself

    def _continued_positions(self, input_ids: torch.Tensor, context: Context, offsets: torch.Tensor) -> dict[str, Any]:
        """Forward kwargs placing token j of a continuation (B, S) at position prefix + offsets[j]."""
        return {"position_ids": (context.length + offsets).expand(input_ids.shape[0], -1)}  # 1-D RoPE


class InternVLBackbone(ChatBackbone):
    """InternVL in transformers' native ('-hf') layout: square views (dynamic 448 tiles, a squash or a pad),
    pixel-shuffled ViT features."""

    modes = tuple(SQUARE_VIEWS)

    def __init__(self, model: PreTrainedModel, preprocess: PreprocessConfig):
        super().__init__(model, preprocess)
        vision = model.config.vision_config
        patches = (vision.image_size[0] // vision.patch_size[0]) * (vision.image_size[1] // vision.patch_size[1])
        # pixel shuffle keeps downsample_ratio^2 of the patch tokens (0.5 -> 1024 patches become 256 tokens)
        self.tokens_per_tile = int(patches * model.config.downsample_ratio**2)
        if vision.image_size[0] != preprocess.image_size:
            raise ValueError(f"preprocess.image_size={preprocess.image_size} but the vision tower takes {vision.image_size}")

    def raw_visual(self, image: Image.Image) -> Visual:
        pixels = self.square_views(image)  # (n_tiles, 3, S, S)
        n_tiles = pixels.shape[0]
        return Visual(pixels, n_tiles * self.tokens_per_tile, key=(n_tiles,))

    def collate(self, visuals: list[Visual]) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.from_numpy(np.concatenate([v.pixels for v in visuals]))}


class QwenVLBackbone(ChatBackbone):
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL: native-resolution patches and 3-D multimodal RoPE."""

    modes = ("qwen2_vl",)

    def __init__(self, model: PreTrainedModel, preprocess: PreprocessConfig):
        super().__init__(model, preprocess)
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        vision = model.config.vision_config
        self.merge = vision.spatial_merge_size
        self.processor = Qwen2VLImageProcessorPil(
            min_pixels=preprocess.min_pixels,
            max_pixels=preprocess.max_pixels,
            patch_size=vision.patch_size,
            temporal_patch_size=vision.temporal_patch_size,
            merge_size=self.merge,
            image_mean=list(preprocess.mean),
            image_std=list(preprocess.std),
        )

    def raw_visual(self, image: Image.Image) -> Visual:  # the processor's patches: nothing left for `finish`
        out = self.processor(images=[image], return_tensors="np")
        grid = tuple(int(x) for x in out["image_grid_thw"][0])
        n_tokens = grid[0] * grid[1] * grid[2] // self.merge**2
        return Visual(out["pixel_values"].astype(np.float32), n_tokens, key=grid, grid_thw=grid)

    def collate(self, visuals: list[Visual]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.from_numpy(np.concatenate([v.pixels for v in visuals])),
            "image_grid_thw": torch.tensor([v.grid_thw for v in visuals], dtype=torch.long),
        }

    def generation_inputs(self, input_ids, images):
        return {"mm_token_type_ids": (input_ids == self.image_token_id).int()}

    def _positions(self, input_ids, images, attention_mask=None):
        # 3-D (temporal, height, width) positions for the image tokens; text continues 1-D after them.
        types = (input_ids == self.image_token_id).int()
        positions, deltas = self.base.get_rope_index(
            input_ids, mm_token_type_ids=types, image_grid_thw=images["image_grid_thw"], attention_mask=attention_mask
        )
        return {"position_ids": positions}, deltas

    def _continued_positions(self, input_ids, context, offsets):
        steps = context.length + offsets  # text after the image: one position for all three axes, shifted
        positions = steps.view(1, 1, -1) + context.rope_deltas.view(1, -1, 1).to(input_ids.device)
        return {"position_ids": positions.expand(3, -1, -1)}

