"""Selection, materialising kept images, and comparing two score tables."""

from __future__ import annotations

import math
import os

import numpy as np
import pyarrow as pa
import pytest
from image_files import encode, write_shard

from beholder.curate import compare, materialise, select


def table(rows: list[tuple]) -> pa.Table:
    """(path, score, group) rows; score None means an error row."""
    return pa.Table.from_pylist(
        [
            {
                "path": p,
                "score": s,
                "error": None if s is not None else "ImageError: x",
                "prompt": g,
                "dim_looks": None if s is None else 1 - s,
            }
            for p, s, g in rows
        ]
    )


SCORES = table(
    [
        ("c.jpg", 0.9, "cat"),
        ("a.jpg", 0.5, "cat"),
        ("b.jpg", 0.5, "cat"),
        ("bad.jpg", None, "cat"),
        ("d.jpg", 0.2, "dog"),
        ("e.jpg", 0.7, "dog"),
        ("f.jpg", 0.4, None),
    ]
)


def paths(selection) -> list[str]:
    return selection.table["path"].to_pylist()


def test_threshold_keeps_inclusive_bounds_and_leaves_errors_out():
    s = select(SCORES, min_score=0.5)
    assert paths(s) == ["c.jpg", "e.jpg", "a.jpg", "b.jpg"]  # score descending, ties by path
    assert (s.considered, s.excluded) == (6, 1)
    assert paths(select(SCORES, min_score=0.4, max_score=0.5)) == ["a.jpg", "b.jpg", "f.jpg"]


def test_top_k_per_group_breaks_ties_by_path():
    s = select(SCORES, top_k=2, group_by="prompt")
    # groups in order of first appearance; rows without a group value form one group, first
    assert paths(s) == ["f.jpg", "c.jpg", "a.jpg", "e.jpg", "d.jpg"]
    assert paths(select(SCORES, top_k=2)) == ["c.jpg", "e.jpg"]


def test_top_fraction_rounds_up_per_group_and_filters_come_first():
    assert paths(select(SCORES, top_fraction=0.3, group_by="prompt")) == ["f.jpg", "c.jpg", "e.jpg"]
    assert paths(select(SCORES, top_fraction=0.3)) == ["c.jpg", "e.jpg"]  # ceil(0.3 * 6) = 2, not 3 (float noise)
    assert paths(select(SCORES, max_score=0.6, top_k=1)) == ["a.jpg"]


def test_select_on_a_dimension_and_bad_arguments():
    assert paths(select(SCORES, top_k=1, by="dim_looks")) == ["d.jpg"]
    with pytest.raises(ValueError, match="not both"):
        select(SCORES, top_k=1, top_fraction=0.5)
    with pytest.raises(ValueError, match=r"top_fraction must be in \(0, 1\]"):
        select(SCORES, top_fraction=1.5)
    with pytest.raises(ValueError, match="no column 'style' to group by"):
        select(SCORES, top_k=1, group_by="style")
    with pytest.raises(ValueError, match="no column 'dim_outfit'"):
        select(SCORES, top_k=1, by="dim_outfit")


def test_materialise_copies_links_and_extracts_with_unique_names(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    first, second = tmp_path / "x" / "same.jpg", tmp_path / "y" / "same.jpg"
    first.write_bytes(encode(1))
    second.write_bytes(encode(2))
    shard = write_shard(tmp_path / "s.tar", {"deep/same.jpg": encode(3)})
    kept = pa.table({"path": [str(first), str(second), f"{shard}/deep/same.jpg"]})
    for mode in ("copy", "symlink", "hardlink"):
        dest = tmp_path / mode
        targets = materialise(kept, dest, mode=mode)
        assert [t.name for t in targets] == ["same.jpg", "same-1.jpg", "same-2.jpg"]
        assert [t.read_bytes() for t in targets] == [encode(1), encode(2), encode(3)]
        assert targets[0].is_symlink() == (mode == "symlink")
        assert (os.stat(targets[0]).st_ino == os.stat(first).st_ino) == (mode != "copy")
    with pytest.raises(FileExistsError, match="3 file.*already in"):
        materialise(kept, tmp_path / "copy")
    with pytest.raises(FileNotFoundError, match="1 selected image"):
        materialise(pa.table({"path": [str(tmp_path / "gone.jpg")]}), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def scored(values, prefix="img", errors=0) -> pa.Table:
    """A score table with dim_looks = score and a constant dim_outfit, plus `errors` error rows."""
    rows = [
        {"path": f"{prefix}{i}.jpg", "score": float(v), "error": None, "dim_looks": float(v), "dim_outfit": 0.5}
        for i, v in enumerate(values)
    ]
    rows += [{"path": f"{prefix}_err{i}.jpg", "score": None, "error": "ImageError: x"} for i in range(errors)]
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("path", pa.string()),
                ("score", pa.float64()),
                ("error", pa.string()),
                ("dim_looks", pa.float64()),
                ("dim_outfit", pa.float64()),
            ]
        ),
    )


def test_paired_comparison_finds_the_better_set():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 60)
    a, b = scored(base + rng.normal(0.05, 0.02, 60)), scored(base)
    c = compare(a, b)
    assert c.paired and c.n_pairs == 60 and c.overall.test == "wilcoxon"
    assert c.winner == "A" and c.overall.p_value < 1e-6
    assert c.overall.diff == pytest.approx(np.mean(a["score"].to_numpy() - base))
    assert c.overall.diff_ci_low < c.overall.diff < c.overall.diff_ci_high
    outfit, looks = c.metrics[1:]  # dimensions in official order
    assert (looks.metric, looks.winner) == ("dim_looks", "A")
    assert (outfit.metric, outfit.winner, outfit.p_value) == ("dim_outfit", None, 1.0)  # identical: no test
    assert compare(b, a).winner == "B"


def test_unpaired_comparison_reports_stats_and_excludes_errors():
    rng = np.random.default_rng(1)
    a = scored(rng.normal(0.5, 0.1, 80), prefix="a")
    b = scored(rng.normal(0.6, 0.1, 70), prefix="b", errors=1)
    c = compare(a, b)
    assert not c.paired and c.overall.test == "mann-whitney"
    assert (c.excluded_a, c.excluded_b, c.overall.a.n, c.overall.b.n) == (0, 1, 80, 70)
    assert c.winner == "B"
    sa = c.overall.a
    values = a["score"].to_numpy()
    assert (sa.mean, sa.median, sa.std) == pytest.approx((values.mean(), np.median(values), values.std(ddof=1)))
    half = 1.990450 * values.std(ddof=1) / math.sqrt(80)  # t(0.975, 79)
    assert (sa.ci_low, sa.ci_high) == pytest.approx((values.mean() - half, values.mean() + half), rel=1e-5)


def test_no_winner_without_significance_and_holm_adjustment():
    rng = np.random.default_rng(2)
    same = rng.uniform(0, 1, 40)
    c = compare(scored(same), scored(same + rng.normal(0, 0.001, 40)), alpha=0.05)
    assert c.winner is None
    for m in c.metrics[1:]:
        assert m.p_adjusted >= m.p_value or math.isnan(m.p_value)
    forced = compare(scored(same), scored(same[::-1]), paired=False)
    assert not forced.paired


def test_provenance_differences_are_noted():
    a, b = scored([0.1, 0.2]), scored([0.3, 0.4])
    notes = compare(
        a,
        b,
        provenance=(
            {"model": "m1", "weights_sha256": "1", "scale": [0, 1], "mode": "full"},
            {"model": "m2", "weights_sha256": "2", "scale": [0, 100], "mode": "fast"},
        ),
    ).notes
    assert len(notes) == 3 and "different models (m1 vs m2)" in notes[0]


def test_same_model_name_with_other_weights_is_not_called_two_models():
    provenance = ({"model": "hae", "weights_sha256": "a" * 64}, {"model": "hae", "weights_sha256": "b" * 64})
    [note] = compare(scored([0.1, 0.2]), scored([0.3, 0.4]), provenance=provenance).notes
    assert note == "A and B were scored by different weights of hae (sha256 aaaaaaaaaaaa vs bbbbbbbbbbbb...)"
