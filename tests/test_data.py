"""Dataset building: normalisation, the face filter, MOS, levels, QA rows in the official formats, the split."""

from __future__ import annotations

import csv
import json
import re
import sys
import types
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from beholder import typedconfig
from beholder.cli import main as cli
from beholder.data import (
    EXPERT_QUESTIONS,
    OVERALL_QUESTIONS,
    BuildConfig,
    FaceBox,
    HaarFaceDetector,
    Label,
    Rating,
    SourceConfig,
    TrainingRow,
    build_dataset,
    count_faces,
    expert_answer,
    mean_opinion_scores,
    min_max,
    overall_answer,
    qa_row,
    read_labels,
    read_training_rows,
    split_labels,
    write_labels,
    write_training_rows,
)
from beholder.data.build import FaceFilterConfig
from beholder.data.qa import IMAGE_PLACEHOLDER
from beholder.standard import DIMENSIONS
from beholder.train import TrainConfig


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _images(folder, names):
    """Small images of different content (the build keeps one of images with the same content)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (16, 16), tuple(zlib.crc32(f"{folder.name}/{name}".encode()).to_bytes(4, "big")[:3])).save(
            folder / name
        )


# ---- normalisation ----------------------------------------------------------------------------------------------


def test_min_max_maps_each_source_onto_0_1():
    assert min_max([2.0, 4.0, 6.0, 3.0]) == pytest.approx([0.0, 0.5, 1.0, 0.25])
    with pytest.raises(ValueError, match="every score is 5"):
        min_max([5.0, 5.0])


def test_sources_on_different_scales_are_normalised_each_on_its_own(tmp_path):
    _images(tmp_path / "a", [f"a{i}.png" for i in range(4)])
    _images(tmp_path / "b", [f"b{i}.png" for i in range(3)])
    _write_csv(tmp_path / "a/labels.csv", ["image", "score"], [[f"a{i}.png", s] for i, s in enumerate([1, 2, 4, 5])])
    _write_csv(tmp_path / "b/scores.csv", ["file", "mos"], [["b0.png", 10], ["b1.png", 40], ["b2.png", 70]])
    config = BuildConfig(
        sources=(
            SourceConfig("a", "a/labels.csv"),  # a 1-5 scale
            SourceConfig("b", "b/scores.csv", image_column="file", score_column="mos"),  # a 10-70 range
        ),
        test_fraction=0.0,
    )
    build_dataset(config, tmp_path)
    scores = {lab.key: lab.overall for lab in read_labels(tmp_path / "dataset/train_labels.jsonl")}
    assert scores == pytest.approx({"a/a0.png": 0.0, "a/a1.png": 0.25, "a/a2.png": 0.75, "a/a3.png": 1.0,
                                    "b/b0.png": 0.0, "b/b1.png": 0.5, "b/b2.png": 1.0})


def test_image_column_is_image_or_path_unless_named(tmp_path):
    _images(tmp_path, ["x.png", "y.png"])
    _write_csv(tmp_path / "p.csv", ["path", "score"], [["x.png", 1], ["y.png", 2]])
    _write_csv(tmp_path / "both.csv", ["image", "path", "score"], [["x.png", "x.png", 1]])
    [report] = build_dataset(BuildConfig(sources=(SourceConfig("p", "p.csv"),), test_fraction=0.0), tmp_path)
    assert report.kept == 2
    with pytest.raises(ValueError, match="needs one image column, `image` or `path`.*image_column"):
        build_dataset(BuildConfig(sources=(SourceConfig("b", "both.csv"),)), tmp_path)


def test_the_same_image_in_two_sources_is_kept_once_and_reported(tmp_path, capsys):
    _images(tmp_path / "a", ["a0.png", "a1.png", "a2.png"])
    _images(tmp_path / "b", ["b0.png", "b1.png"])
    (tmp_path / "b" / "copy.png").write_bytes((tmp_path / "a" / "a1.png").read_bytes())  # a1 again, renamed
    _write_csv(tmp_path / "a/l.csv", ["image", "score"], [["a0.png", 1], ["a1.png", 2], ["a2.png", 3]])
    _write_csv(tmp_path / "b/l.csv", ["image", "score"], [["b0.png", 1], ["copy.png", 2], ["b1.png", 3]])
    (tmp_path / "build.yaml").write_text("test_fraction: 0.5\nsources:\n  - {name: a, labels: a/l.csv}\n"
                                         "  - {name: b, labels: b/l.csv}\n")
    assert cli(["data", "build", str(tmp_path / "build.yaml"), "--no-progress"]) == 0
    assert re.search(r"^b +overall +3 +2 +\d+ +\d+  duplicate=1$", capsys.readouterr().out, re.MULTILINE)
    images = [r.image for f in ("train", "test") for r in read_training_rows(tmp_path / f"dataset/{f}.jsonl")]
    assert len(images) == 5 and not any(i.endswith("copy.png") for i in images)


def test_a_source_the_filters_empty_is_an_error_naming_it_and_its_counts(tmp_path, monkeypatch, capsys):
    _images(tmp_path, ["x.png", "y.png", "z.png"])
    _write_csv(tmp_path / "l.csv", ["image", "score"], [["x.png", 2], ["y.png", 3], ["z.png", 4]])
    (tmp_path / "build.yaml").write_text("sources:\n  - {name: web, labels: l.csv}\n")
    faces = {"x": 1, "y": 0, "z": 2}  # faces found per image: only x has exactly one
    detector = types.SimpleNamespace(detect=lambda image: [FaceBox(0, 0, 1, 1)] * faces[_name_of(image, tmp_path)])
    monkeypatch.setitem(sys.modules, "scripted_faces", types.SimpleNamespace(make=lambda: detector))
    argv = ["data", "build", str(tmp_path / "build.yaml"), "--no-progress", "--set", "faces.detector=scripted_faces:make"]
    assert cli([*argv, "--set", "sources.0.single_face=true"]) == 101  # --set reaches an item of the list
    assert ("source 'web': 1 of 3 images left (dropped: no_face 1, several_faces 1); cannot min-max normalise"
            in capsys.readouterr().err)
    faces["x"] = 0
    assert cli([*argv, "--set", "sources.0.single_face=true"]) == 101
    assert "source 'web': 0 of 3 images left (dropped: no_face 2, several_faces 1)" in capsys.readouterr().err


def _name_of(image, folder) -> str:
    """Which of _images' pictures this is, by its colour."""
    colours = {Image.open(p).getpixel((0, 0)): p.stem for p in folder.glob("*.png")}
    return colours[image.getpixel((0, 0))]


# ---- face filter ------------------------------------------------------------------------------------------------


def _drawn_faces(n: int) -> Image.Image:
    """A cartoon image with n frontal faces (light oval, dark brows and eyes, nose, mouth)."""
    image = Image.new("RGB", (320, 240), (120, 150, 170))
    draw = ImageDraw.Draw(image)
    for k in range(n):
        cx, cy = (160 if n == 1 else 90 + 140 * k), 120
        draw.ellipse([cx - 40, cy - 52, cx + 40, cy + 52], fill=(225, 190, 160))
        for left in (cx - 30, cx + 10):
            draw.rectangle([left, cy - 26, left + 20, cy - 22], fill=(60, 40, 30))  # brow
            draw.ellipse([left + 3, cy - 16, left + 17, cy - 6], fill=(40, 30, 30))  # eye
        draw.polygon([(cx, cy - 6), (cx - 6, cy + 14), (cx + 6, cy + 14)], fill=(200, 160, 135))
        draw.ellipse([cx - 16, cy + 24, cx + 16, cy + 32], fill=(150, 60, 60))
    return image.filter(ImageFilter.GaussianBlur(1.5))


def test_haar_detector_counts_drawn_faces():
    detector = HaarFaceDetector()
    assert [count_faces(detector, _drawn_faces(n)) for n in (0, 1, 2)] == [0, 1, 2]
    # boxes come back in the caller's pixels even when the detector works on a downscaled copy
    big = _drawn_faces(1).resize((1280, 960))
    [box] = HaarFaceDetector(max_side=320).detect(big)
    assert 300 < box.width < 700 and 400 < box.x + box.width / 2 < 900


def test_pluggable_detector_filters_before_normalising(tmp_path, monkeypatch):
    """A RetinaFace-style detector (boxes with confidences) plugged in by name; images without exactly one
    confident face are dropped, and min-max then runs over the kept images only (Eq. 1 on the filtered set)."""
    faces = {"one.png": [0.99], "two.png": [0.99, 0.95], "none.png": [], "weak.png": [0.99, 0.3], "low.png": [0.9]}

    class ScriptedDetector:
        def __init__(self, script):
            self.script = script

        def detect(self, image):
            return [FaceBox(0, 0, 8, 8, s) for s in self.script[image.getpixel((0, 0))]]

    colours = {name: (i, 0, 0) for i, name in enumerate(faces)}
    for name, colour in colours.items():
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), colour).save(tmp_path / "img" / name)
    script = {colours[name]: scores for name, scores in faces.items()}
    monkeypatch.setitem(sys.modules, "scripted_faces", types.SimpleNamespace(make=lambda: ScriptedDetector(script)))
    raw = {"one.png": 3.0, "two.png": 100.0, "none.png": -50.0, "weak.png": 5.0, "low.png": 4.0}
    _write_csv(tmp_path / "labels.csv", ["image", "score"], [[f"img/{n}", s] for n, s in raw.items()])
    config = BuildConfig(
        sources=(SourceConfig("web", "labels.csv", single_face=True),),
        faces=FaceFilterConfig(detector="scripted_faces:make", min_score=0.5, workers=2),
        test_fraction=0.0,
    )
    [report] = build_dataset(config, tmp_path)
    assert (report.read, report.kept, report.dropped) == (5, 3, {"several_faces": 1, "no_face": 1})
    kept = {lab.key: lab.overall for lab in read_labels(tmp_path / "dataset/train_labels.jsonl")}
    assert kept == pytest.approx({"web/one.png": 0.0, "web/low.png": 0.5, "web/weak.png": 1.0})


# ---- mean opinion scores ----------------------------------------------------------------------------------------


def test_mos_is_the_per_dimension_mean_with_a_minimum_rater_count():
    full = [Rating("a", f"r{i}", (0.1 * i,) * 12) for i in range(3)]  # 3 raters: MOS 0.1 everywhere
    # image b: 3 raters, but one skipped "looks": that dimension has only 2 ratings
    skipping = tuple(None if k == "looks" else 0.5 for k in DIMENSIONS)
    partial = [Rating("b", "r0", (0.2,) * 12), Rating("b", "r1", (0.8,) * 12), Rating("b", "r2", skipping)]
    result = mean_opinion_scores(full + partial + [Rating("c", "r0", (1.0,) * 12)], min_raters=3)
    assert result.scores == {"a": pytest.approx((0.1,) * 12)}
    assert result.too_few_raters == {"b": 2, "c": 1}
    relaxed = mean_opinion_scores(partial, min_raters=2).scores["b"]
    assert relaxed[DIMENSIONS.index("looks")] == pytest.approx(0.5)
    assert relaxed[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="more than once"):
        mean_opinion_scores([Rating("a", "r0", (0.1,) * 12)] * 2, min_raters=1)


def test_raters_source_maps_its_scale_and_drops_thin_images(tmp_path):
    _images(tmp_path, ["x.png", "y.png"])
    header = ["image", "who", *DIMENSIONS]
    rows = [["x.png", f"r{i}", *([2 + 2 * i] * 12)] for i in range(3)]  # 0-10 scale: 2, 4, 6 -> MOS 0.4
    rows += [["y.png", "r0", *([10] * 12)]]  # one rater only
    _write_csv(tmp_path / "ratings.csv", header, rows)
    source = SourceConfig("studio", "ratings.csv", kind="raters", rater_column="who", scale=(0.0, 10.0))
    [report] = build_dataset(BuildConfig(sources=(source,), min_raters=3, test_fraction=0.0), tmp_path)
    assert (report.read, report.kept, report.dropped) == (2, 1, {"too_few_raters": 1})
    [label] = read_labels(tmp_path / "dataset/train_labels.jsonl")
    assert label.is_expert and label.scores == pytest.approx((0.4,) * 12)
    bad = SourceConfig("studio", "ratings.csv", kind="raters", rater_column="who", scale=(0.0, 5.0))
    with pytest.raises(ValueError, match="outside the scale"):
        build_dataset(BuildConfig(sources=(bad,), min_raters=1), tmp_path)


# ---- levels and QA rows -----------------------------------------------------------------------------------------


def test_answers_use_the_official_levels_and_layout():
    assert overall_answer(0.19999) == "The aesthetics of the human image is bad"
    assert overall_answer(0.2) == "The aesthetics of the human image is poor"
    assert overall_answer(0.8) == "The aesthetics of the human image is excellent"
    scores = (0.0, 0.2, 0.39, 0.4, 0.6, 0.79, 0.8, 1.0, 0.5, 0.1, 0.3, 0.7)
    lines = expert_answer(scores).split("\n")
    assert len(lines) == 12
    assert lines[0] == "1. Facial Brightness : bad"
    assert lines[5] == "6. Facial Aesthetic Score : good"
    assert lines[9] == "10. Environment : bad"
    assert lines[11] == "12. Comprehensive Aesthetic Score : good"


def test_qa_rows_ask_a_paraphrase_and_carry_the_scores():
    overall = qa_row(Label("/d/o.png", "s", (0.45,)), seed=0)
    assert overall.query.removeprefix(IMAGE_PLACEHOLDER) in OVERALL_QUESTIONS
    assert overall.response == "The aesthetics of the human image is fair"
    assert overall.scores == (0.0,) * 11 + (0.45,) and not overall.is_expert
    expert = qa_row(Label("/d/e.png", "s", tuple(np.linspace(0, 1, 12))), seed=0)
    assert expert.query.removeprefix(IMAGE_PLACEHOLDER) in EXPERT_QUESTIONS and expert.is_expert
    assert EXPERT_QUESTIONS[1] == "Rate the aesthetics of this human picture from 12 different dimensions."
    # the paraphrase depends on the seed and the image, not on anything else
    assert qa_row(Label("/elsewhere/o.png", "s", (0.1,)), seed=0).query == overall.query
    picks = {qa_row(Label(f"/d/{i}.png", "s", (0.5,)), seed=0).query for i in range(40)}
    assert len(picks) == len(OVERALL_QUESTIONS)


def test_official_jsonl_formats_round_trip(tmp_path):
    labels = [Label(str(tmp_path / "img/a.png"), "scut", (0.7,)), Label(str(tmp_path / "img/b.png"), "hb", (0.5,) * 12)]
    write_labels(tmp_path / "labels.jsonl", labels)
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert rows[0] == {"image_name": "img/a.png", "source": "scut", "score": 0.7, "text_level": "good",
                       "is_expert": False}
    assert rows[1]["score"] == [0.5] * 12 and rows[1]["is_expert"] is True
    assert read_labels(tmp_path / "labels.jsonl") == labels
    training = [qa_row(label, seed=3) for label in labels]
    write_training_rows(tmp_path / "train.jsonl", training)
    first = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"query", "response", "history", "images", "scores", "is_expert"}
    assert first["history"] == [] and first["images"] == ["img/a.png"] and first["is_expert"] == 0
    assert read_training_rows(tmp_path / "train.jsonl") == training
    # an official row with an empty query (the official files leave it to the trainer) reads fine
    (tmp_path / "official.jsonl").write_text(json.dumps({**first, "query": "", "images": ["/abs/x.png"]}) + "\n")
    [row] = read_training_rows(tmp_path / "official.jsonl")
    assert row == TrainingRow("", first["response"], "/abs/x.png", tuple(first["scores"]), False)


def test_official_label_files_are_a_source_that_keeps_its_rows_sources(tmp_path):
    """HumanBeauty-58K's label.jsonl mixes datasets: each keeps its name, so the split stays per dataset."""
    names = [f"{i}.png" for i in range(20)]
    _images(tmp_path / "hb/images", names)
    rows = [{"image_name": n, "source": "AVA" if i < 10 else "SCUT", "score": i / 20} for i, n in enumerate(names)]
    rows[0] = {"image_name": "0.png", "score": [0.3] * 12}  # no source of its own: the config's name
    (tmp_path / "hb/label.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = SourceConfig("hb58k", "hb/label.jsonl", kind="official", images="hb/images")
    [report] = build_dataset(BuildConfig(sources=(source,), test_fraction=0.2), tmp_path)
    assert (report.read, report.kept, report.train, report.test) == (20, 20, 15, 5)
    test = {lab.key: lab for lab in read_labels(tmp_path / "dataset/test_labels.jsonl")}
    # train = int(0.8 * n) per source: AVA 9 -> 7 + 2, SCUT 10 -> 8 + 2, hb58k 1 -> 0 + 1
    assert sorted(lab.source for lab in test.values()) == ["AVA", "AVA", "SCUT", "SCUT", "hb58k"]
    train = {lab.key: lab for lab in read_labels(tmp_path / "dataset/train_labels.jsonl")}
    assert test["hb58k/0.png"].scores == (0.3,) * 12 and train["SCUT/19.png"].scores == (0.95,)


# ---- split ------------------------------------------------------------------------------------------------------


def test_split_is_per_source_seeded_and_order_independent():
    labels = [Label(f"/x/{s}{i}.png", s, (0.5,)) for s, n in (("big", 200), ("small", 20)) for i in range(n)]
    train, test = split_labels(labels, 0.1, seed=0)
    assert sum(lab.source == "big" for lab in test) == 20 and sum(lab.source == "small" for lab in test) == 2
    assert not {lab.key for lab in train} & {lab.key for lab in test} and len(train) + len(test) == 220
    again = split_labels(list(reversed(labels)), 0.1, seed=0)[1]
    assert {lab.key for lab in again} == {lab.key for lab in test}
    assert {lab.key for lab in split_labels(labels, 0.1, seed=1)[1]} != {lab.key for lab in test}
    with pytest.raises(ValueError, match="duplicate image"):
        split_labels(labels + labels[:1], 0.1, seed=0)


@pytest.mark.parametrize("n, n_test", [(5, 1), (9, 1), (10, 1), (15, 2), (25, 3), (1, 1)])
def test_split_counts_as_the_official_script(n, n_test):
    """train = int(0.9 * n), test = the rest: a 5-image source still gives a test image."""
    labels = [Label(f"/x/{i}.png", "s", (0.5,)) for i in range(n)]
    train, test = split_labels(labels, 0.1, seed=0)
    assert (len(train), len(test)) == (int(0.9 * n), n_test)


def test_cli_build_twice_gives_the_same_rows_and_never_duplicates(tmp_path, capsys):
    names = [f"i{i:02d}.png" for i in range(30)]
    _images(tmp_path / "src", names)
    _write_csv(tmp_path / "src/labels.csv", ["image", "score"], [[n, i % 7] for i, n in enumerate(names)])
    (tmp_path / "build.yaml").write_text(
        "output: out\nseed: 5\ntest_fraction: 0.2\nsources:\n  - {name: s, labels: src/labels.csv}\n"
    )
    out = tmp_path / "out"
    files = ("train.jsonl", "test.jsonl", "train_labels.jsonl", "test_labels.jsonl")
    assert cli(["data", "build", str(tmp_path / "build.yaml")]) == 0
    first = {f: (out / f).read_text() for f in files}
    assert cli(["data", "build", str(tmp_path / "build.yaml")]) == 0
    assert {f: (out / f).read_text() for f in files} == first
    train, test = read_training_rows(out / "train.jsonl"), read_training_rows(out / "test.jsonl")
    images = [r.image for r in train + test]
    assert len(train) == 24 and len(test) == 6 and len(set(images)) == 30
    assert re.search(r"^s +overall +30 +30 +24 +6 +-$", capsys.readouterr().out, re.MULTILINE)  # the summary


# ---- typed configs ----------------------------------------------------------------------------------------------


def test_typed_config_coerces_yaml_and_rejects_mistakes(tmp_path):
    (tmp_path / "t.yaml").write_text("model: m\ntrain: t\noutput: o\nstage1: {lr: 1e-4, epochs: 2}\n")
    config = typedconfig.load(TrainConfig, tmp_path / "t.yaml", ["stage1.language=full", "heads=[regression, lm]"])
    assert config.stage1.lr == 1e-4 and isinstance(config.stage1.lr, float) and config.stage1.epochs == 2.0
    assert config.stage1.language == "full" and config.heads == ("regression", "lm")
    with pytest.raises(typedconfig.ConfigError, match="TrainConfig.stage1: unknown field.*'lrr'"):
        typedconfig.load(TrainConfig, tmp_path / "t.yaml", ["stage1.lrr=1"])
    with pytest.raises(typedconfig.ConfigError, match="stage1.vision: 'some' is not one of"):
        typedconfig.load(TrainConfig, tmp_path / "t.yaml", ["stage1.vision=some"])
    with pytest.raises(typedconfig.ConfigError, match="save_every: expected an integer"):
        typedconfig.load(TrainConfig, tmp_path / "t.yaml", ["save_every=1.5"])
    with pytest.raises(ValueError, match="MetaVoter fuses"):
        typedconfig.load(TrainConfig, tmp_path / "t.yaml", ["heads=[regression, metavoter]"])
    # on the command line a bad config is an invalid invocation (exit status 2, one line), not a traceback
    assert cli(["train", str(tmp_path / "t.yaml"), "--set", "stage1.lrr=1"]) == 2
    assert cli(["data", "build", str(tmp_path / "missing.yaml")]) == 2
