"""AestheticModel: one chat VLM backbone + the aesthetic heads + the prompts of its preset.

Scoring paths (B images of one batch key, so every row has the same prompt length and no padding is needed):
  fast: one forward over [prefix | overall question]             -> level + regression heads
  full: one forward over [prefix] keeping its KV cache,
        then [overall question] and [12-dim question] on top of it -> level, regression, expert, MetaVoter
  named scores (prompt.scores, e.g. UniPercept's three): [prefix] once, then each question on its KV cache
        -> the level head on each; the first is the overall score
Only the LM-head rows of the tokens the level head reads are multiplied, never the (B, vocab) logits.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from beholder.config import ModelConfig
from beholder.model.adapters import adapter_for
from beholder.model.backbones import ChatBackbone, Visual
from beholder.model.heads import AestheticHeads, HeadOutputs
from beholder.model.prompts import get_template, prefix_texts, suffix_text


def level_token_ids(tokenizer: PreTrainedTokenizerBase, tokens: tuple[str, ...]) -> list[int]:
    """The ids the level head reads, resolved as ArtiMuse's reference does: the literal vocabulary token
    (convert_tokens_to_ids) when the vocabulary has it, else the one token the text encodes to. A text that is a
    vocabulary token and also encodes to a different single token is ambiguous, and an error."""
    vocab = tokenizer.get_vocab()
    ids = []
    for text in tokens:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        single = encoded[0] if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id else None
        literal = vocab.get(text)
        if literal is not None and single is not None and single != literal:
            raise ValueError(
                f"level token {text!r} is vocabulary token {literal} but encodes to token {single} "
                f"({tokenizer.convert_ids_to_tokens(single)!r}): say which is meant in heads.level.tokens"
            )
        if literal is None and single is None:
            raise ValueError(
                f"level token {text!r} is not in the vocabulary and encodes to {len(encoded)} tokens {encoded}, not "
                "one known token"
            )
        ids.append(literal if literal is not None else single)
    return ids


class AestheticModel(nn.Module):
    def __init__(self, hf_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.hf_model = hf_model
        self.weights_files: tuple[Path, ...] = ()  # the files its weights were loaded from (set by load_model)
        adapter = adapter_for(config.backbone)
        if not issubclass(adapter, ChatBackbone):
            raise ValueError(f"backbone {config.backbone!r} reads no prompt: it is not a chat model")
        self.backbone: ChatBackbone = adapter(hf_model, config.preprocess)
        if config.prompt.scores and not config.heads.level:
            raise ValueError("named scores (prompt.scores) are read by the level head, which this config does not have")
        level_ids = level_token_ids(tokenizer, config.heads.level.tokens) if config.heads.level else None
        self.heads = AestheticHeads(self.backbone.hidden_size, config.heads, level_ids)
        self.template = get_template(config.prompt.template)
        if tokenizer.convert_tokens_to_ids(self.template.image_token) != self.backbone.image_token_id:
            raise ValueError(
                f"template image token {self.template.image_token!r} is not the model's image_token_id "
                f"{self.backbone.image_token_id}"
            )

    # ---- prompt ids --------------------------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def suffix_ids(self, question: str, answer_prefix: str) -> tuple[int, ...]:
        """The question turn after the image and the start of the answer, as ids."""
        return tuple(self._encode(suffix_text(self.template, self.config.prompt, question, answer_prefix)))

    def prefix_ids(self, n_image_tokens: int) -> tuple[int, ...]:
        """Shared prefix: system turn, user turn start, image placeholders."""
        head, tail = self._prefix_parts
        return head + (self.backbone.image_token_id,) * n_image_tokens + tail

    @cached_property
    def _prefix_parts(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        head, tail = prefix_texts(self.template, self.config.prompt)
        return tuple(self._encode(head)), tuple(self._encode(tail))

    @cached_property
    def question_ids(self) -> tuple[int, ...]:
        return self.suffix_ids(self.config.prompt.question, self.config.prompt.answer_prefix)

    @cached_property
    def expert_question_ids(self) -> tuple[int, ...]:
        return self.suffix_ids(self.config.prompt.expert_question, self.config.prompt.expert_answer_prefix)

    @cached_property
    def named_question_ids(self) -> dict[str, tuple[int, ...]]:
        """Each named score's question turn, as ids, in the config's order."""
        return {q.name: self.suffix_ids(q.question, q.answer_prefix) for q in self.config.prompt.scores}

    # ---- forward paths -----------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.hf_model.device

    def _batch_inputs(self, visuals: list[Visual]) -> tuple[tuple[int, ...], dict[str, torch.Tensor]]:
        keys = {v.key for v in visuals}
        if len(keys) != 1:
            raise ValueError(f"a batch must share one visual key (tile count / patch grid), got {sorted(keys)}")
        images = {k: t.to(self.device) for k, t in self.backbone.collate(visuals).items()}
        if "pixel_values" in images:
            images["pixel_values"] = images["pixel_values"].to(self.hf_model.dtype)
        return self.prefix_ids(visuals[0].n_tokens), images

    def _ids(self, ids: tuple[int, ...], batch: int) -> torch.Tensor:
        return torch.tensor(ids, dtype=torch.long, device=self.device).expand(batch, -1)

    @torch.inference_mode()
    def score_fast(self, visuals: list[Visual]) -> HeadOutputs:
        """One forward pass of [prefix | overall question]: level + regression heads; with named scores, the prefix
        once and every named question on its KV cache."""
        if self.config.prompt.scores:
            return self._score_on_prefix(visuals, expert=False)
        prefix, images = self._batch_inputs(visuals)
        hidden, _ = self.backbone.encode(self._ids(prefix + self.question_ids, len(visuals)), images)
        return self.heads_on(hidden[:, -1])

    @torch.inference_mode()
    def score_full(self, visuals: list[Visual]) -> HeadOutputs:
        """Image prefix encoded once; both questions continue from its KV cache; every head the model has (a
        model without the MetaVoter, e.g. before stage 2 of training, still gets its 12 expert dimensions; when
        full scoring is asked of a Scorer is Scorer.full_scoring's call)."""
        return self._score_on_prefix(visuals, expert=True)

    def _score_on_prefix(self, visuals: list[Visual], *, expert: bool) -> HeadOutputs:
        """The image prefix encoded once; the overall question (or each named one) and, if asked, the 12-dim
        question continue from its KV cache."""
        prefix, images = self._batch_inputs(visuals)
        batch = len(visuals)
        _, context = self.backbone.encode(self._ids(prefix, batch), images, keep_cache=True)
        asked = self.named_question_ids or {"": self.question_ids}
        hidden = {name: self.backbone.extend(self._ids(ids, batch), context)[:, -1] for name, ids in asked.items()}
        expert_hidden = (
            self.backbone.extend(self._ids(self.expert_question_ids, batch), context)[:, -1] if expert else None
        )
        out = self.heads_on(next(iter(hidden.values())), expert_hidden)
        if self.named_question_ids:
            out.scores = {name: self._level(h)[1] for name, h in hidden.items()}
        return out

    def _level(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The level head on last-position hidden states (B, hidden): (native expectation, normalised)."""
        level = self.heads.level
        native = level.expectation(level.logits(hidden, self.backbone.lm_head))
        return native, level.normalise(native)

    def heads_on(self, hidden: torch.Tensor, expert_hidden: torch.Tensor | None = None) -> HeadOutputs:
        """Apply the heads to last-position hidden states (B, hidden) of the overall (and 12-dim) prompt."""
        heads, out = self.heads, HeadOutputs()
        if heads.level is not None:
            out.lm_native, out.lm = self._level(hidden)
        if heads.regression is not None:
            out.regression = heads.regression_score(hidden, self.config.scale)
        if expert_hidden is not None and heads.expert is not None:
            out.dimensions = heads.expert(expert_hidden)
            out.expert = out.dimensions[:, -1]
            if heads.metavoter is not None:
                out.metavoter = heads.metavoter(out.lm, out.regression, out.expert)
        return out

    def final_score(self, out: HeadOutputs) -> torch.Tensor:
        """(B,) final score in [0, 1]: the MetaVoter when it ran, else the preset's one-pass head."""
        return out.final(self.config.heads.fast)

    @torch.inference_mode()
    def annotate(self, visuals: list[Visual], max_new_tokens: int = 160, **generate_kwargs) -> list[str]:
        """Generate the 12-dimension text answer for the 12-dim question (greedy unless told otherwise)."""
        prefix, images = self._batch_inputs(visuals)
        ids = self._ids(prefix + self.expert_question_ids, len(visuals))
        generate_kwargs.setdefault("do_sample", False)
        extra = self.backbone.generation_inputs(ids, images)
        out = self.hf_model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self._stop_ids(),
            **images,
            **extra,
            **generate_kwargs,
        )
        return self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)

    def _stop_ids(self) -> list[int]:
        stops = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
        return sorted(i for i in stops if i is not None and i != self.tokenizer.unk_token_id)
