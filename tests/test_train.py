"""Two-stage training: the training forward reads what scoring reads, losses by label type, a smoke run that
learns, resumes and exports a model `beholder.load` scores with, the ablation switches, and 2-process DDP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import beholder
from beholder.data import Label, qa_row, write_training_rows
from beholder.data.qa import IMAGE_PLACEHOLDER
from beholder.data.rows import TrainingRow
from beholder.testing import build_model, make_image, make_tiny_model
from beholder.train import TrainConfig, initial_model, load_train_config, switched_heads, train
from beholder.train.config import LoraSettings, Stage1Config, Stage2Config
from beholder.train.examples import IGNORE, Collator, ExampleBuilder
from beholder.train.losses import Stage1Loss
from beholder.train.stage2 import fit_metavoter


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny model folder and 8 training rows: 4 overall-only, 4 with 12 dimensions, images of 3 shapes."""
    root = tmp_path_factory.mktemp("train-data")
    model = make_tiny_model(root / "start", seed=1)
    labels = []
    for i in range(8):
        path = root / f"img{i}.png"
        make_image(*((64, 64), (120, 60), (50, 90))[i % 3], seed=i).save(path)
        scores = (0.15 + 0.1 * i,) if i % 2 else tuple((0.05 * i + 0.07 * k) % 1 for k in range(12))
        labels.append(Label(str(path), "s", scores))
    write_training_rows(root / "train.jsonl", [qa_row(label, seed=0) for label in labels])
    return root, model


def _config(root, model, output, **changes) -> TrainConfig:
    """8 steps, each over all 8 rows (so the loss curve is not the noise of changing batches)."""
    stage1 = Stage1Config(epochs=8, batch_size=8, micro_batch_size=4, lr=3e-3, head_lr=3e-3, warmup=0.0,
                          projector="full", lora=LoraSettings(dropout=0.1))
    values = {"model": str(model), "train": str(root / "train.jsonl"), "output": str(output), "stage1": stage1,
              "stage2": Stage2Config(epochs=3, batch_size=4, lr=1e-2), "log_every": 1}
    return TrainConfig(**{**values, **changes})


# ---- the training forward -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["internvl", "qwen2_vl"])
def test_padded_training_forward_reads_the_positions_scoring_reads(backbone):
    """Rows of a right-padded mixed batch, asked the configured questions, give the heads exactly the hidden
    states the (unpadded, prefix-shared) scoring path gives them: the losses against the scoring outputs are 0."""
    model = build_model(backbone, seed=3)
    prompt = model.config.prompt
    images = [make_image(90, 60, seed=1), make_image(64, 64, seed=2), make_image(40, 120, seed=3)]
    reference = [model.score_full([model.backbone.visual(image)]) for image in images]  # differing shapes
    rows = [
        TrainingRow(IMAGE_PLACEHOLDER + prompt.question, "The aesthetics of the human image is good", "a.png",
                    (0.0,) * 11 + (reference[0].regression.item(),), False),
        TrainingRow(IMAGE_PLACEHOLDER + prompt.expert_question, "12 lines", "b.png",
                    tuple(reference[1].dimensions[0].tolist()), True),
        TrainingRow(IMAGE_PLACEHOLDER + prompt.question, "The aesthetics of the human image is excellent and more",
                    "c.png", (0.0,) * 11 + (reference[2].regression.item(),), False),
    ]
    builder = ExampleBuilder(model, expert_rows=True, answers=True, seed=0)
    examples = [builder(row, image) for row, image in zip(rows, images)]
    batch = Collator(model)(examples)
    assert batch.attention_mask.sum(1).tolist() == [len(e.input_ids) for e in examples]
    assert len({len(e.input_ids) for e in examples}) == 3  # three lengths: the batch really is padded
    terms = Stage1Loss(model.train(), lm=True, reg_weight=1.0, expert_weight=1.0)(batch)
    assert terms.regression.tolist() == pytest.approx([0, 0, 0], abs=1e-10)
    assert terms.expert.tolist() == pytest.approx([0, 0, 0], abs=1e-10)
    # the level word is the first supervised token after the heads' position, and the prompt is never supervised
    level = model.heads.level.token_ids[3].item()  # " good"
    overall = examples[0]
    assert overall.labels[overall.head_index + 1] == level == overall.input_ids[overall.head_index + 1]
    assert set(overall.labels[: overall.head_index - 6]) == {IGNORE}
    assert (batch.labels[batch.attention_mask == 0] == IGNORE).all()
    # the cross-entropy at that position is the full-vocabulary one of a plain forward pass
    with torch.no_grad():
        ids = torch.tensor([overall.input_ids])
        pixels = model.backbone.collate([overall.visual])
        extra = model.backbone.generation_inputs(ids, pixels)
        logits = model.hf_model(input_ids=ids, **pixels, **extra).logits[0]
    targets = torch.tensor(overall.labels[1:])
    supervised = targets != IGNORE
    expected = torch.nn.functional.cross_entropy(logits[:-1][supervised], targets[supervised])
    assert terms.ce[0].item() == pytest.approx(expected.item(), rel=1e-4)


def test_loss_switch_follows_the_label_type():
    """Eq. 7: the regression head learns only from overall-only rows, the Expert head only from 12-dim rows."""
    model = build_model("internvl", seed=0)
    builder = ExampleBuilder(model, expert_rows=True, answers=False, seed=0)
    rows = [qa_row(Label("a.png", "s", (0.3,)), 0), qa_row(Label("b.png", "s", (0.6,) * 12), 0)]
    batch = Collator(model)([builder(row, make_image(seed=i)) for i, row in enumerate(rows)])
    assert (batch.labels == IGNORE).all()  # no LM head: no answer tokens at all
    loss = Stage1Loss(model.train(), lm=False, reg_weight=2.0, expert_weight=3.0)
    terms = loss(batch)
    assert terms.ce.tolist() == [0.0, 0.0]
    assert terms.expert[0] == 0 and terms.regression[1] == 0
    assert terms.total.tolist() == pytest.approx([2 * terms.regression[0].item(), 3 * terms.expert[1].item()])
    model.zero_grad()
    terms.total[0].backward()
    assert model.heads.regression.weight.grad.abs().sum() > 0
    assert model.heads.expert.leaves.weight.grad is None or model.heads.expert.leaves.weight.grad.abs().sum() == 0


def test_switched_off_expert_turns_12_dim_rows_into_overall_rows():
    model = build_model("internvl", seed=0)
    row = qa_row(Label("b.png", "s", tuple(0.05 * k for k in range(12))), 0)
    example = ExampleBuilder(model, expert_rows=False, answers=True, seed=0)(row, make_image())
    assert not example.is_expert and example.scores == (0.0,) * 11 + (0.55,)
    answer = model.tokenizer.decode([t for t in example.labels if t != IGNORE])
    assert answer == "The aesthetics of the human image is fair<|im_end|>"
    prompt = model.tokenizer.decode(example.input_ids[: example.head_index + 1])
    assert "12 different dimensions" not in prompt


def test_head_switches_give_the_ablation_rows_models():
    heads = build_model("internvl").config.heads
    reg = switched_heads(heads, ("regression",))
    assert reg.level is None and reg.expert is None and reg.metavoter is None and reg.fast == "regression"
    lm = switched_heads(heads, ("regression", "lm"))
    assert lm.level == heads.level and lm.expert is None and lm.fast == "regression"
    assert switched_heads(heads, ("lm",)).fast == "level"
    assert switched_heads(heads, ("regression", "lm", "expert", "metavoter")) == heads


def test_stage1_defaults_are_the_official_recipe():
    """LoRA on the language model and on the projector (mlp1), AdamW with beta2 = 0.95."""
    from beholder.train.trainable import setup_stage1

    config = Stage1Config()
    assert (config.language, config.projector, config.vision, config.betas) == ("lora", "lora", "frozen", (0.9, 0.95))
    model = build_model(seed=0)
    setup_stage1(model, config, seed=0)
    adapted = {name.split(".lora_")[0] for name, p in model.named_parameters() if p.requires_grad and ".lora_" in name}
    assert any("multi_modal_projector" in name for name in adapted)
    assert any("language_model" in name for name in adapted)
    assert not any("vision_tower" in name for name in adapted)


def test_metavoter_fits_with_l1():
    torch.manual_seed(0)
    voter = build_model("internvl").heads.metavoter
    inputs = torch.rand(256, 3)
    targets = 0.2 * inputs[:, 0] + 0.3 * inputs[:, 1] + 0.5 * inputs[:, 2]
    losses = fit_metavoter(voter, inputs, targets, Stage2Config(epochs=30, batch_size=32, lr=1e-2), seed=0)
    assert losses[-1] < 0.3 * losses[0] and losses[-1] < 0.05
    assert not voter.training and not any(p.requires_grad for p in voter.parameters())


# ---- whole runs -------------------------------------------------------------------------------------------------


def test_smoke_run_learns_resumes_and_exports(dataset, tmp_path):
    root, start = dataset
    config = _config(root, start, tmp_path / "run", save_every=4)
    folder = train(config)
    log = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    # it learns: every term of the loss falls (a random model's tied embeddings cap how far LoRA moves the CE)
    assert log[-1]["ce"] < log[0]["ce"] - 0.05
    assert log[-1]["regression"] < 0.5 * log[0]["regression"] and log[-1]["expert"] < 0.5 * log[0]["expert"]
    final = {"heads": load_file(folder / "heads.safetensors"), "model": load_file(folder / "model.safetensors")}

    # the export scores through the public API, all four heads and 12 dimensions
    scorer = beholder.load(folder)
    results = scorer.score([str(root / "img0.png"), str(root / "img1.png")], full=True)
    assert all(r.ok and set(r.heads) == {"lm", "regression", "expert", "metavoter"} for r in results)
    assert len(results[0].dimensions) == 12 and scorer.config.name == "run"
    assert json.loads((folder / "training.json").read_text())["config"]["stage1"]["lr"] == 3e-3

    # stage 2 changed the MetaVoter only; the regression head is the one stage 1 left
    stage1 = load_file(tmp_path / "run/checkpoints/step-000008/trainable.safetensors")
    optimizer = torch.load(tmp_path / "run/checkpoints/step-000008/optimizer.pt", weights_only=True)
    assert {tuple(group["betas"]) for group in optimizer["param_groups"]} == {(0.9, 0.95)}  # the official beta2
    assert torch.equal(final["heads"]["regression.weight"], stage1["heads.regression.weight"])
    started = initial_model(config).heads.state_dict()
    assert not torch.equal(final["heads"]["metavoter.net.0.weight"], started["metavoter.net.0.weight"])

    # interrupted after step 4: the rerun resumes there (RNG included) and ends with the same weights
    shutil.rmtree(tmp_path / "run/checkpoints/step-000008")
    shutil.rmtree(folder)
    (tmp_path / "run/log.jsonl").unlink()
    train(config)
    resumed = [json.loads(line)["step"] for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert resumed == [5, 6, 7, 8]
    for name, tensors in final.items():
        again = load_file(folder / f"{name}.safetensors")
        for key, value in tensors.items():
            torch.testing.assert_close(again[key], value, rtol=0, atol=1e-6, msg=f"{name} {key}")


def test_regression_only_row_exports_a_fast_model(dataset, tmp_path):
    root, start = dataset
    folder = train(_config(root, start, tmp_path / "reg", heads=("regression",), stage1=Stage1Config(
        epochs=1, batch_size=4, micro_batch_size=4, lr=1e-3)))
    log = [json.loads(line) for line in (tmp_path / "reg/log.jsonl").read_text().splitlines()]
    assert all(r["ce"] == 0 and r["expert"] == 0 for r in log)
    scorer = beholder.load(folder)
    assert not scorer.has_full and scorer.config.heads.level is None
    [result] = scorer.score([str(root / "img0.png")])
    assert result.ok and set(result.heads) == {"regression"}


def test_batch_larger_than_the_data_trains_on_the_batch_the_data_makes(dataset, tmp_path, capsys):
    root, start = dataset
    train(_config(root, start, tmp_path / "big", heads=("regression",), log_every=1, stage1=Stage1Config(
        epochs=1.5, batch_size=64, micro_batch_size=8, lr=1e-3)))  # 8 rows x 1.5 epochs: 12 rows in all
    out = capsys.readouterr()
    assert "8 training rows x 1.5 epochs make no batch of 64: batch_size 12, micro_batch_size 6" in out.err
    assert re.search(r"^stage 1 step 1/1: total=\S+ .* \(\d+s, ETA 0s\)$", out.out, re.MULTILINE)


def test_two_process_ddp_matches_one_process(dataset, tmp_path):
    """torchrun with 2 CPU processes (gloo): each takes half of every batch in stage 1 and a share of the
    images in stage 2; the exported model is the one a single process makes."""
    _, start = dataset
    labels = []
    for i in range(24):  # 24 images: stage 2's windows of 16 images go 16 to one process, 8 to the other
        make_image(48, 48, seed=100 + i).save(tmp_path / f"{i}.png")
        labels.append(Label(str(tmp_path / f"{i}.png"), "s", (i / 24,) if i % 2 else (i / 24,) * 12))
    write_training_rows(tmp_path / "rows.jsonl", [qa_row(label, seed=0) for label in labels])
    settings = {"stage1.epochs": 1, "stage1.batch_size": 4, "stage1.micro_batch_size": 2, "stage1.lr": 3e-3,
                "stage1.warmup": 0, "stage1.lora.dropout": 0, "stage1.projector": "full", "stage2.epochs": 3,
                "stage2.batch_size": 8, "stage2.lr": 1e-2, "eval_batch_size": 1, "log_every": 1, "name": "one"}
    overrides = [f"{k}={v}" for k, v in settings.items()]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the kernels of the single-threaded workers below, so sums run in the same order
    try:
        single = train(load_train_config(None, [f"model={start}", f"train={tmp_path / 'rows.jsonl'}",
                                                f"output={tmp_path / 'one'}", *overrides]))
    finally:
        torch.set_num_threads(threads)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "beholder",
        "train", "--model", str(start), "--data", str(tmp_path / "rows.jsonl"), "--output", str(tmp_path / "two"),
        *(arg for item in overrides for arg in ("--set", item)),
    ]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads((tmp_path / "two/checkpoints/step-000006/state.json").read_text())["world"] == 2
    one_log = (tmp_path / "one/log.jsonl").read_text().splitlines()
    two_log = (tmp_path / "two/log.jsonl").read_text().splitlines()
    for a, b in zip(map(json.loads, one_log), map(json.loads, two_log), strict=True):
        assert b["total"] == pytest.approx(a["total"], rel=1e-5)
    for name in ("heads", "model"):
        one, two = load_file(single / f"{name}.safetensors"), load_file(tmp_path / f"two/model/{name}.safetensors")
        assert one.keys() == two.keys()
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=f"{name} {key}")
    images = [label.image for label in labels[:6]]
    for a, b in zip(beholder.load(single).score(images), beholder.load(tmp_path / "two/model").score(images)):
        assert b.heads == pytest.approx(a.heads, abs=1e-5)
