"""Training rows -> token ids, labels and the position the heads read; batches of them, right-padded.

One example is [image prefix | question turn + answer prefix | rest of the answer + end of turn]. The first two
parts are tokenised exactly as scoring tokenises them (AestheticModel.prefix_ids, suffix_ids), so the
heads read in training the very position they read when scoring: the last token of the answer prefix (overall
rows: "... image is", whose next token is the level word) or of the assistant turn's start (12-dim rows).
The LM head is trained (cross-entropy) on the whole answer and the end-of-turn token; never on the prompt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from beholder.data.qa import overall_answer, query_question, question
from beholder.data.rows import TrainingRow
from beholder.preprocess import decode_image
from beholder.model.aesthetic import AestheticModel
from beholder.model.backbones import Visual

IGNORE = -100  # label of tokens without a loss (prompt, image, padding): torch's cross-entropy ignore_index


@dataclass
class Example:
    input_ids: list[int]  # (L,) prefix with image placeholders, question turn, answer
    labels: list[int]  # (L,) the token itself where the LM head is trained on it, else IGNORE
    head_index: int  # position whose last hidden state the heads read
    visual: Visual
    scores: tuple[float, ...]  # 12 targets, official order (overall-only rows: only the last is real)
    is_expert: bool  # supervise the Expert head (f = 1), else the regression head (f = 0)


class ExampleBuilder:
    """Turns a row and its decoded image into an Example for one model.

    expert_rows: False when the Expert head is switched off (ablation rows without it); 12-dim rows then
        become overall rows (an overall question, the overall answer and score), as the paper's baselines.
    answers: False when the LM head is switched off; examples then end at the heads' position.
    """

    def __init__(self, model: AestheticModel, *, expert_rows: bool, answers: bool, seed: int):
        self.model = model
        self.expert_rows = expert_rows
        self.answers = answers
        self.seed = seed

    def _encode(self, text: str) -> list[int]:
        return self.model.tokenizer.encode(text, add_special_tokens=False)

    def __call__(self, row: TrainingRow, image) -> Example:
        expert = row.is_expert and self.expert_rows
        text, response = query_question(row.query), row.response
        if row.is_expert != expert:  # a 12-dim row read as an overall row
            text, response = "", overall_answer(row.overall)
        if not text:  # official rows leave the query empty: pick a paraphrase, stable per image
            text = question(self.seed, os.path.basename(row.image), expert)
        prompt = self.model.config.prompt
        answer_prefix = prompt.expert_answer_prefix if expert else prompt.answer_prefix
        if not response.startswith(answer_prefix):
            raise ValueError(f"{row.image}: the answer {response[:60]!r} does not start with {answer_prefix!r}")
        visual = self.model.backbone.visual(image)
        prefix = list(self.model.prefix_ids(visual.n_tokens))
        prompt_ids = list(self.model.suffix_ids(text, answer_prefix))
        ids, labels = prefix + prompt_ids, [IGNORE] * (len(prefix) + len(prompt_ids))
        if self.answers:
            turn = list(self.model.suffix_ids(text, ""))
            if prompt_ids[: len(turn)] != turn:
                raise ValueError(f"the tokenizer merges the answer prefix {answer_prefix!r} into the assistant turn")
            answer = self._encode(response[len(answer_prefix) :] + self.model.template.assistant_end)
            labels[len(prefix) + len(turn) :] = prompt_ids[len(turn) :]
            ids, labels = ids + answer, labels + answer
        scores = row.scores if expert else (0.0,) * (len(row.scores) - 1) + (row.overall,)
        return Example(ids, labels, len(prefix) + len(prompt_ids) - 1, visual, scores, expert)


class RowDataset(Dataset):
    """Rows -> Examples, decoding each image when asked (in DataLoader workers when there are any)."""

    def __init__(self, rows: list[TrainingRow], builder: ExampleBuilder):
        self.rows = rows
        self.builder = builder
        self.preprocess = builder.model.config.preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Example:
        row = self.rows[index]
        return self.builder(row, decode_image(row.image, self.preprocess))


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) right-padded with the pad token
    attention_mask: torch.Tensor  # (B, L) 1 on real tokens
    labels: torch.Tensor  # (B, L) IGNORE on prompt, image and padding
    head_index: torch.Tensor  # (B,) position the heads read, per row
    images: dict[str, torch.Tensor]  # the backbone's collated visual inputs (e.g. pixel_values (tiles, 3, S, S))
    scores: torch.Tensor  # (B, 12) float32 targets
    is_expert: torch.Tensor  # (B,) bool

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device) -> Batch:
        moved = {k: v.to(device) for k, v in vars(self).items() if k != "images"}
        return Batch(**moved, images={k: v.to(device) for k, v in self.images.items()})


class Collator:
    """Examples -> a right-padded Batch; a class (not a closure) so DataLoader workers can receive it."""

    def __init__(self, model: AestheticModel):
        self.backbone = model.backbone
        self.pad_id = model.tokenizer.pad_token_id

    def __call__(self, examples: list[Example]) -> Batch:
        width = max(len(e.input_ids) for e in examples)
        ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for i, e in enumerate(examples):
            ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[i, : len(e.labels)] = torch.tensor(e.labels)
            mask[i, : len(e.input_ids)] = 1
        return Batch(
            input_ids=ids,
            attention_mask=mask,
            labels=labels,
            head_index=torch.tensor([e.head_index for e in examples]),
            images=self.backbone.collate([e.visual for e in examples]),
            scores=torch.tensor([e.scores for e in examples], dtype=torch.float32),
            is_expert=torch.tensor([e.is_expert for e in examples]),
        )
