"""Benchmark readers, scale handling, reports and `beholder evaluate`, on small generated benchmarks."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from beholder import metrics
from beholder.cli import main
from beholder.evaluate import Scale, evaluate, load_benchmark, read_predictions, write_reports
from beholder.io import write_table
from beholder.results import ScoreResult
from beholder.standard import DIMENSIONS
from beholder.testing import make_image

N = 24
CATEGORIES = ("photo", "anime", "poster")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    """A folder of real small images (PNG and JPEG) under images/, with ground truth in every layout."""
    root = tmp_path_factory.mktemp("bench")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    dims = rng.random((N, 12)).round(4)
    names = []
    for i in range(N):
        name = f"images/{i:03d}.{'png' if i % 2 else 'jpg'}"
        make_image(48 + 8 * (i % 3), 40, seed=i).save(root / name)
        names.append(name)
    # HumanBeauty: odd rows are 12-dimension (is_expert) rows, even rows overall-only.
    with open(root / "humanbeauty.jsonl", "w") as f:
        for i, name in enumerate(names):
            score = dims[i].tolist() if i % 2 else float(dims[i, 11])
            row = {"image_name": name, "source": CATEGORIES[i % 3], "score": score, "is_expert": i % 2}
            f.write(json.dumps(row) + "\n")
    # ERIA-1K: a JSON list of image + ground-truth score on 1-10 (spanning 2.0-9.67), with a category.
    eria = [
        {"image": n, "score": round(2.0 + 7.67 * dims[i, 11], 2), "category": CATEGORIES[i % 3]}
        for i, n in enumerate(names)
    ]
    (root / "eria.json").write_text(json.dumps(eria))
    # Generic tables: path, score, category and the 12 dim_<key> columns.
    table = pa.table(
        {
            "path": names,
            "score": dims[:, 11],
            "category": [CATEGORIES[i % 3] for i in range(N)],
            **{f"dim_{key}": dims[:, k] for k, key in enumerate(DIMENSIONS)},
        }
    )
    pa_csv.write_csv(table, root / "table.csv")
    pq.write_table(table, root / "table.parquet")
    with open(root / "table.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in table.to_pylist())
    np.save(root / "dims.npy", dims)
    return root


LAYOUT_FILES = {
    "humanbeauty.jsonl": "humanbeauty",
    "eria.json": "eria",
    "table.csv": "table",
    "table.jsonl": "table",
    "table.parquet": "table",
}


def synthetic_predictions(bench, scale: tuple[float, float], seed: int = 0, noise: float = 0.1) -> list[ScoreResult]:
    """Noisy copies of the ground truth on the prediction scale `scale`, 12 dimensions included."""
    rng = np.random.default_rng(seed)
    lo, hi = scale
    results = []
    for item in bench.items:
        gt01 = bench.scale.normalise(np.array([item.score]))[0]
        p01 = float(np.clip(gt01 + rng.normal(0, noise), 0, 1))
        dims = {k: float(np.clip(v + rng.normal(0, noise), 0, 1)) for k, v in item.dimensions.items()}
        results.append(ScoreResult(item.path, lo + p01 * (hi - lo), dimensions=dims))
    return results


# ---- readers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "layout"), LAYOUT_FILES.items())
def test_readers_agree_on_every_layout(bench_dir: Path, file: str, layout: str) -> None:
    dims = np.load(bench_dir / "dims.npy")
    bench = load_benchmark(bench_dir / file)
    assert bench.layout == layout and len(bench.items) == N
    first, second = bench.items[0], bench.items[1]
    assert first.path == str(bench_dir / "images/000.jpg") and Path(first.path).is_file()
    assert first.category == "photo" and second.category == "anime"
    expected_scale = (1.0, 10.0) if layout == "eria" else (0.0, 1.0)
    assert bench.scale.bounds == expected_scale and "default" in bench.scale.source
    expected = (2.0 + 7.67 * dims[:, 11]).round(2) if layout == "eria" else dims[:, 11]
    assert [item.score for item in bench.items] == pytest.approx(expected)
    if layout == "eria":
        assert not bench.has_dimensions
    else:
        assert second.dimensions == pytest.approx(dict(zip(DIMENSIONS, dims[1], strict=True)))
        # HumanBeauty's overall-only rows have no dimensions; the tables give them on every row
        assert bool(first.dimensions) == (layout == "table")


def test_padded_overall_only_rows_have_no_dimensions(tmp_path: Path) -> None:
    rows = [
        {"image_name": "a.jpg", "source": "s", "score": [0.0] * 11 + [0.7], "is_expert": 0},
        {"image_name": "b.jpg", "source": "s", "score": [0.5] * 11 + [0.6], "is_expert": 1},
    ]
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    a, b = load_benchmark(tmp_path / "labels.jsonl").items
    assert (a.score, a.dimensions) == (0.7, {})
    assert b.score == 0.6 and b.dimensions["looks"] == 0.5


def test_image_root_and_explicit_scale(bench_dir: Path, tmp_path: Path) -> None:
    bench = load_benchmark(bench_dir / "table.csv", image_root=tmp_path, scale=Scale(0, 2, "--gt-scale"))
    assert bench.items[0].path == str(tmp_path / "images/000.jpg")
    assert bench.scale.source == "--gt-scale"
    assert bench.describe()["categories"] == {"anime": 8, "photo": 8, "poster": 8}


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (
            '[{"image": "a.jpg", "score": 11.5}]',
            ".json",
            r"1 ground-truth scores lie outside the stated scale \[1.0, 10.0\].*--gt-scale",
        ),
        ('[{"image": "a.jpg", "mos": 5}, {"img": "b.jpg"}]', ".json", r"row 2: .*no score field"),
        ('{"images": []}', ".json", "expected a JSON list of objects"),
        ('{"image_name": "a.jpg", "score": [0.5, 0.5], "is_expert": 1}\n', ".jsonl", "row 1: expected 12 scores"),
        ('{"image_name": "a.jpg", "score": NaN, "is_expert": 0}\n', ".jsonl", "row 1: score is nan"),
        ("path,score,dim_looks\na.jpg,0.5,1.5\n", ".csv", r"1 dimension scores lie outside \[0, 1\]"),
        ("", ".jsonl", "no rows"),
        ("a.jpg 5\n", ".txt", "cannot tell the layout"),
    ],
)
def test_reader_errors_are_clear(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"labels{suffix}"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_benchmark(path)


def test_matching_by_path_absolute_path_and_unique_file_name(bench_dir: Path, monkeypatch) -> None:
    bench = load_benchmark(bench_dir / "eria.json")
    monkeypatch.chdir(bench_dir)
    results = [
        ScoreResult(str(bench_dir / "images/000.jpg"), 0.5),  # exact
        ScoreResult("images/001.png", 0.5),  # relative to the working directory
        ScoreResult("/elsewhere/002.jpg", 0.5),  # a unique file name
        ScoreResult("/elsewhere/unknown.jpg", 0.5),
    ]
    match = bench.match(results)
    assert [item.name for item, _ in match.pairs] == ["images/000.jpg", "images/001.png", "images/002.jpg"]
    assert match.unmatched == ["/elsewhere/unknown.jpg"] and len(match.missing) == N - 3
    with pytest.raises(ValueError, match="two predictions for benchmark image"):
        bench.match([ScoreResult("images/000.jpg", 0.1), ScoreResult("000.jpg", 0.2)])


# ---- measuring -----------------------------------------------------------------------------------------------


def test_scales_are_normalised_for_errors_but_not_for_correlations(bench_dir: Path) -> None:
    bench = load_benchmark(bench_dir / "eria.json")  # ground truth on 1-10
    results = synthetic_predictions(bench, (0, 100))  # an ArtiMuse-style 0-100 model
    ev = evaluate(bench, results, name="m", pred_scale=Scale(0, 100, "--pred-scale"), bootstrap=0)
    pred = np.array([r.score for r in results])
    gt = np.array([item.score for item in bench.items])
    overall = ev.report["overall"]
    assert overall["srcc"] == pytest.approx(metrics.srcc(pred, gt))
    assert overall["plcc"] == pytest.approx(metrics.plcc(pred, gt))
    assert overall["mae"] == pytest.approx(np.mean(np.abs(pred / 100 - (gt - 1) / 9)))
    assert overall["mean_signed_error"] == pytest.approx(np.mean(pred / 100 - (gt - 1) / 9))
    assert ev.report["scales"]["prediction"] == {"lo": 0, "hi": 100, "source": "--pred-scale"}
    assert ev.report["scales"]["ground_truth"]["hi"] == 10.0
    photo = np.array([i % 3 == 0 for i in range(N)])
    assert ev.report["categories"]["photo"]["bias"] == pytest.approx(np.mean(pred[photo] / 100 - (gt[photo] - 1) / 9))
    assert ev.report["dimensions"] is None and "ci" not in overall


def test_coverage_failures_and_out_of_scale_predictions(bench_dir: Path) -> None:
    bench = load_benchmark(bench_dir / "humanbeauty.jsonl")
    results = synthetic_predictions(bench, (0, 1))[:-2]  # two images never scored
    results[0] = ScoreResult(results[0].path, error="ImageError: truncated")
    results[1] = ScoreResult(results[1].path, 1.7)  # outside 0-1
    results.append(ScoreResult("stray.jpg", 0.5))
    with pytest.warns(UserWarning, match="1 of 21 predictions lie outside their stated scale"):
        ev = evaluate(bench, results, name="m", pred_scale=Scale(0, 1, "test"), bootstrap=0)
    assert ev.report["coverage"] == {
        "n_items": N,
        "n_scored": 21,
        "n_failed": 1,
        "n_missing": 2,
        "n_unmatched_predictions": 1,
    }
    assert ev.report["scales"]["predictions_outside_scale"] == 1
    with pytest.raises(ValueError, match="only 0 of 24 benchmark images have a score"):
        evaluate(bench, [], name="none", pred_scale=Scale(0, 1, "test"))


def test_per_dimension_and_per_category_tables(bench_dir: Path) -> None:
    bench = load_benchmark(bench_dir / "humanbeauty.jsonl")
    results = synthetic_predictions(bench, (0, 1))
    results[0] = ScoreResult(results[0].path, 0.5)  # a constant predictor on one category is not a crash
    ev = evaluate(bench, results, name="m", pred_scale=Scale(0, 1, "test"), bootstrap=50)
    dims = ev.report["dimensions"]
    assert list(dims) == list(DIMENSIONS) and all(d["n"] == N // 2 for d in dims.values())
    expert = [(item, r) for item, r in zip(bench.items, results, strict=True) if item.dimensions]
    looks = [(r.dimensions["looks"], item.dimensions["looks"]) for item, r in expert]
    assert dims["looks"]["mae"] == pytest.approx(np.mean([abs(p - g) for p, g in looks]))
    assert dims["looks"]["hae_compat_mae_is_sqrt_mae"] == pytest.approx(math.sqrt(dims["looks"]["mae"]))
    cats = ev.report["categories"]
    assert sorted(cats) == sorted(CATEGORIES) and sum(c["n"] for c in cats.values()) == N
    for c in cats.values():
        assert c["bias_ci"][0] <= c["bias"] <= c["bias_ci"][1]


# ---- reports -------------------------------------------------------------------------------------------------


def assert_self_contained_html(path: Path, expected_images: int) -> None:
    html = path.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == expected_images
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in images)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", html), "a resource is referenced by URL"
    assert not re.search(r"<script|<link|@import|url\(", html, re.IGNORECASE)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")


def test_reports_in_every_format(bench_dir: Path, tmp_path: Path) -> None:
    bench = load_benchmark(bench_dir / "humanbeauty.jsonl")
    evs = [
        evaluate(
            bench,
            synthetic_predictions(bench, (0, 1), seed=s, noise=n),
            name=f"m{s}",
            pred_scale=Scale(0, 1, "t"),
            bootstrap=30,
        )
        for s, n in ((0, 0.3), (1, 0.05))
    ]
    written = write_reports(evs, tmp_path)
    assert set(written) == {"json", "md", "html", "disagreements m0", "disagreements m1"}
    document = json.loads(written["json"].read_text())
    assert [row["model"] for row in document["leaderboard"]] == ["m1", "m0"]  # less noise, higher SRCC first
    assert document["evaluations"][0]["overall"]["srcc"] == pytest.approx(evs[0].report["overall"]["srcc"])
    markdown = written["md"].read_text()
    assert "## Leaderboard" in markdown and "| m1 | 24 |" in markdown
    assert "## Per-dimension MAE" in markdown and "| Model | Facial Brightness |" in markdown
    assert 'HumanAesExpert "MAE" (is sqrt of mean \\|error\\|)' in markdown
    assert "Prediction scale: [0, 1] from t." in markdown
    # figures: the per-dimension MAE, then for each model the scatter, the confusion matrix and the bias
    assert_self_contained_html(written["html"], expected_images=1 + 3 * len(evs))


def test_json_report_writes_undefined_values_as_null(bench_dir: Path, tmp_path: Path) -> None:
    bench = load_benchmark(bench_dir / "eria.json")
    results = synthetic_predictions(bench, (0, 1))
    photo = [i for i in range(N) if i % 3 == 0]
    for i in photo:
        results[i] = ScoreResult(results[i].path, 0.5)  # constant on "photo": its SRCC is undefined
    ev = evaluate(bench, results, name="m", pred_scale=Scale(0, 1, "t"), bootstrap=0)
    assert math.isnan(ev.report["categories"]["photo"]["srcc"])
    written = write_reports([ev], tmp_path, formats=("json", "md"))
    assert set(written) == {"json", "md", "disagreements m"}
    assert json.loads(written["json"].read_text())["evaluations"][0]["categories"]["photo"]["srcc"] is None
    assert "| photo | 8 |" in written["md"].read_text()


# ---- command line --------------------------------------------------------------------------------------------


def write_predictions(path: Path, results: list[ScoreResult], scale: tuple[float, float]) -> Path:
    rows = [r.to_row() for r in results]
    names = list(dict.fromkeys(k for row in rows for k in row))
    table = pa.table({k: pa.array([row.get(k) for row in rows]) for k in names})
    write_table(path, table, provenance={"model": "synthetic", "scale": list(scale)})
    return path


@pytest.mark.parametrize("file", ["humanbeauty.jsonl", "eria.json", "table.parquet"])
def test_cli_measures_score_tables_into_a_leaderboard(bench_dir: Path, tmp_path: Path, file: str, capsys) -> None:
    bench = load_benchmark(bench_dir / file)
    a = write_predictions(tmp_path / "model-a.csv", synthetic_predictions(bench, (0, 100), noise=0.05), (0, 100))
    b = write_predictions(tmp_path / "model-b.parquet", synthetic_predictions(bench, (1, 5), noise=0.3), (1, 5))
    out = tmp_path / "report"
    argv = ["evaluate", "--benchmark", str(bench_dir / file), "--predictions", str(a), "--predictions", str(b)]
    assert main([*argv, "-o", str(out), "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("| model-a |") < printed.index("| model-b |")  # the leaderboard, best first
    document = json.loads((out / "report.json").read_text())
    scales = [e["scales"]["prediction"] for e in document["evaluations"]]
    assert scales == [
        {"lo": 0, "hi": 100, "source": "provenance of model-a.csv"},
        {"lo": 1, "hi": 5, "source": "provenance of model-b.parquet"},
    ]
    assert (out / "report.md").is_file()
    assert_self_contained_html(out / "report.html", expected_images=(1 if bench.has_dimensions else 0) + 3 * 2)


def test_cli_errors(bench_dir: Path, tmp_path: Path, capsys) -> None:
    bench = str(bench_dir / "eria.json")
    assert main(["evaluate", "--benchmark", bench]) == 2
    assert "give --model or --predictions" in capsys.readouterr().err
    assert main(["evaluate", "--benchmark", bench, "--predictions", str(tmp_path / "missing.jsonl")]) == 101
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--benchmark", bench, "--predictions", "p.jsonl", "--gt-scale", "10"])
    assert "a scale is written 'lo,hi'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--benchmark", bench, "--predictions", "p.jsonl", "--format", "pdf"])


@pytest.mark.parametrize("file", ["humanbeauty.jsonl", "eria.json", "table.csv"])
def test_cli_scores_with_a_tiny_model_end_to_end(bench_dir: Path, tmp_path: Path, tiny_internvl, file, capsys) -> None:
    out = tmp_path / "report"
    argv = ["evaluate", "--model", str(tiny_internvl), "--benchmark", str(bench_dir / file), "-o", str(out)]
    assert main([*argv, "--device", "cpu", "--bootstrap", "20"]) == 0
    captured = capsys.readouterr()
    assert f"| {tiny_internvl} | {N} |" in captured.out
    [predictions] = out.glob("predictions-*.jsonl")
    assert len(read_predictions(predictions).results) == N
    document = json.loads((out / "report.json").read_text())
    [report] = document["evaluations"]
    assert report["coverage"]["n_scored"] == N and report["overall"]["n"] == N
    assert report["scales"]["prediction"]["source"].startswith("model ")  # the model's native 0-1 scale
    assert report["model"]["provenance"]["mode"] == "full"  # the tiny model has MetaVoter and 12 dimensions
    assert (report["dimensions"] is None) == (file == "eria.json")
    assert "Made by: source" in (out / "report.md").read_text()
    assert_self_contained_html(out / "report.html", expected_images=(0 if file == "eria.json" else 1) + 3)
    # a second run re-measures the finished table without scoring again
    mtime = predictions.stat().st_mtime_ns
    assert main([*argv, "--bootstrap", "0", "--format", "json"]) == 0
    assert predictions.stat().st_mtime_ns == mtime


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no chromium")
def test_html_report_renders_in_headless_chromium(bench_dir: Path, tmp_path: Path) -> None:
    bench = load_benchmark(bench_dir / "humanbeauty.jsonl")
    ev = evaluate(bench, synthetic_predictions(bench, (0, 1)), name="m", pred_scale=Scale(0, 1, "t"), bootstrap=0)
    html = write_reports([ev], tmp_path, formats=("html",))["html"]
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=60,
                         check=True).stdout  # fmt: skip
    assert dom.count("data:image/png;base64,") == 4 and "Per-category bias" in dom
    # The page as a person sees it: the embedded plots must actually decode and paint (a page of text and
    # broken-image icons has a handful of colours; matplotlib plots have hundreds).
    shot = tmp_path / "page.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,4000", html.as_uri()],
                   capture_output=True, timeout=60, check=True)  # fmt: skip
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200


def test_largest_disagreements_per_category_reach_the_reports_and_a_table_review_opens(
    bench_dir: Path, tmp_path: Path
) -> None:
    from beholder.review import Criteria, ReviewSession, ScoreTable

    bench = load_benchmark(bench_dir / "eria.json")
    ev = evaluate(bench, synthetic_predictions(bench, (0, 1), noise=0.3), name="m/1", pred_scale=Scale(0, 1, "t"),
                  bootstrap=0, disagreements=2)  # fmt: skip
    found = ev.report["disagreements"]
    assert sorted(found) == sorted(CATEGORIES)
    for category, items in found.items():
        sizes = np.abs(ev.pred01 - ev.gt01)[np.array(ev.categories) == category]
        assert [abs(d["difference"]) for d in items] == pytest.approx(sorted(sizes, reverse=True)[:2])
        assert all(d["ground_truth"] == pytest.approx(1 + 9 * d["ground_truth01"]) for d in items)  # ERIA: 1-10
    written = write_reports([ev], tmp_path, formats=("html", "md"))
    html = written["html"].read_text()
    assert html.count("data:image/jpeg;base64,") == 6 and "Largest disagreements" in html
    assert "beholder review disagreements-m_1.parquet --group-by category --by disagreement" in html
    assert "| Category | Image | Model | Truth | Difference |" in written["md"].read_text()
    table = written["disagreements m/1"]
    assert table.name == "disagreements-m_1.parquet"
    session = ReviewSession(ScoreTable.read(table, "category"), Criteria(group_by="category", by="disagreement"))
    assert len(session.rows) == 6 and all(os.path.isfile(session.image(i).path) for i in range(6))
    first = {}
    for i, group in enumerate(session.rows.groups):
        first.setdefault(group, session.row(i))
    assert {g: r["disagreement"] for g, r in first.items()} == pytest.approx(
        {c: abs(items[0]["difference"]) for c, items in found.items()}
    )
