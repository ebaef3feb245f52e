"""UniPercept's three scores from one encoded image, byte-exact prompts, and named scores as columns that select,
compare and evaluate take."""

from __future__ import annotations

import hashlib
import json

import chat_layout as cl
import pytest
import torch
from scipy.stats import spearmanr

from beholder.cli import main
from beholder.convert import convert_checkpoint
from beholder.io import read_scores
from beholder.model.folder import load_model
from beholder.presets import PRESETS, UNIPERCEPT_QUESTION
from beholder.scoring import Scorer
from beholder.testing import build_model, make_image, make_tiny_model, make_tokenizer


@pytest.fixture(scope="module")
def unipercept():
    return Scorer(build_model("internvl", seed=3, preset_name="unipercept"))


@torch.inference_mode()
def three_full_passes(model, visual) -> dict[str, float]:
    """The reference reading: score() once per question, each a complete forward pass of [system, image, question]
    over the whole vocabulary, the 101 score tokens' logits at the last position, softmax, expectation 0..100."""
    images = {k: v.to(model.device) for k, v in model.backbone.collate([visual]).items()}
    prefix = model.prefix_ids(visual.n_tokens)
    scores = {}
    for name, question in model.named_question_ids.items():
        logits = model.hf_model(input_ids=torch.tensor([prefix + question]), **images).logits[0, -1].float()
        probs = logits[model.heads.level.token_ids].softmax(-1)
        scores[name] = (probs * torch.arange(101.0)).sum().item()
    return scores


def test_prefix_shared_scores_equal_three_separate_full_passes(unipercept):
    images = [make_image(90, 60, seed=i) for i in range(3)]
    results = unipercept.score(images, batch_size=2)
    for image, result in zip(images, results):
        expected = three_full_passes(unipercept.model, unipercept.prepare(image).visual)
        assert list(result.scores) == ["iaa", "iqa", "ista"]
        assert result.scores == pytest.approx(expected, abs=1e-4)
        assert result.score == result.scores["iaa"]  # the first named score is the model's score
        assert 0 <= min(result.scores.values()) and max(result.scores.values()) <= 100


def test_unipercept_questions_are_byte_exact():
    # sha256 of the f-string template in score() of the public UniPercept code (thunderbolt215/UniPercept, and the
    # unipercept-reward 1.0.3 package), after its leading "<image>", with {desc} unfilled
    assert hashlib.sha256(UNIPERCEPT_QUESTION.encode()).hexdigest() == (
        "a3486c6075645921cb5a8cc17bf0ead6bd84a5461c3d1f5aaebb5b2db1305279"
    )
    digests = {
        "iaa": "24412c54fb4b6682d3700a55dded5bbae61f08ca70d89cd52e4c4fc78a9625e8",
        "iqa": "43835bda51c8651c1925e0ee7612d7c4848bc11c745678e9f6188b9805ea517b",
        "ista": "b959122145e96467a75e31a73be55b99e02322e5a3bd80334adbd65473ccdaa4",
    }
    prompt = PRESETS["unipercept"].prompt
    assert {q.name: hashlib.sha256(q.question.encode()).hexdigest() for q in prompt.scores} == digests
    assert prompt.after_image == "" and all(q.answer_prefix == "" for q in prompt.scores)


def test_converted_unipercept_asks_what_score_asks(tmp_path):
    """A chat-layout checkpoint converted as unipercept: each question's ids are the ids of the query score()
    builds, "<image>" directly followed by the question in InternVL2.5's conversation."""
    tokenizer = make_tokenizer()
    cl.write_checkpoint(tmp_path / "src", tokenizer, llm="qwen2", template="internvl2_5", heads=None, seed=1)
    model = load_model(convert_checkpoint(tmp_path / "src", tmp_path / "dst", preset="unipercept"))
    for q in model.config.prompt.scores:
        query = cl.original_query("internvl2_5", model.config.prompt.system, q.question, 4, after_image="")
        assert list(model.prefix_ids(4) + model.named_question_ids[q.name]) == model.tokenizer(query)["input_ids"]


# ---- named scores as columns -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unipercept_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("named")
    folder = make_tiny_model(root / "model", preset_name="unipercept", seed=4)
    for i in range(6):
        make_image(70 + 7 * i, 60, seed=10 + i).save(root / f"{i}.png")
    out = root / "scores.parquet"
    assert main(["score", str(root / "0.png"), *(str(root / f"{i}.png") for i in range(1, 6)), "-m", str(folder),
                 "-o", str(out), "--no-progress"]) == 0
    return root, folder, out


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_every_output_has_a_column_per_named_score(unipercept_table, suffix):
    root, folder, _ = unipercept_table
    out = root / f"again{suffix}"
    assert main(["score", str(root / "1.png"), str(root / "2.png"), "-m", str(folder), "-o", str(out),
                 "--no-progress"]) == 0
    table = read_scores(out)
    assert table.column_names[:7] == ["path", "score", "level", "error", "score_iaa", "score_iqa", "score_ista"]
    assert table["score"].to_pylist() == table["score_iaa"].to_pylist()


def test_select_ranks_on_any_named_score(unipercept_table, capsys):
    root, _, scores = unipercept_table
    assert main(["select", str(scores), "--top-k", "2", "--by", "score_iqa"]) == 0
    kept = capsys.readouterr().out.split()
    table = read_scores(scores).sort_by([("score_iqa", "descending")])
    assert kept == table["path"].to_pylist()[:2]


def test_compare_reports_every_named_score(unipercept_table, tmp_path, capsys):
    root, folder, scores = unipercept_table
    other = tmp_path / "other.parquet"
    make_tiny_model(tmp_path / "m2", preset_name="unipercept", seed=5)
    assert main(["score", *(str(root / f"{i}.png") for i in range(6)), "-m", str(tmp_path / "m2"), "-o", str(other),
                 "--no-progress"]) == 0
    assert main(["compare", str(scores), str(other), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["metric"] for m in report["metrics"]] == ["score", "score_iaa", "score_iqa", "score_ista"]


def test_evaluate_measures_the_named_score_asked_for(unipercept_table, tmp_path, capsys):
    root, folder, scores = unipercept_table
    bench = tmp_path / "bench.csv"
    bench.write_text("path,score\n" + "".join(f"{root / f'{i}.png'},{0.1 * i + 0.05}\n" for i in range(6)))
    table = read_scores(scores)
    for score, column in (("iqa", "score_iqa"), ("score_ista", "score_ista")):
        out = tmp_path / f"report-{score}"
        assert main(["evaluate", "--predictions", str(scores), "--score", score, "--benchmark", str(bench),
                     "-o", str(out), "--bootstrap", "0", "--format", "json"]) == 0
        report = json.loads((out / "report.json").read_text())["evaluations"][0]
        assert report["model"]["name"] == f"scores:{score}"
        expected = spearmanr(table[column].to_pylist(), [0.1 * int(p[-5]) + 0.05 for p in table["path"].to_pylist()])
        assert report["overall"]["srcc"] == pytest.approx(expected.statistic)
    assert main(["evaluate", "--predictions", str(scores), "--score", "nope", "--benchmark", str(bench),
                 "-o", str(tmp_path / "x"), "--bootstrap", "0"]) == 2
    assert "no column 'score_nope'" in capsys.readouterr().err
