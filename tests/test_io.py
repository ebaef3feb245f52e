"""INPUT expansion, score tables in three formats, and the crash-safe resumable writer (no model needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from image_files import encode, write_photos, write_shard

from beholder.io import (
    InputError,
    InputPlan,
    OutputConflict,
    ResumableWriter,
    read_provenance,
    read_scores,
    read_table,
    read_tar_member,
    split_tar_key,
    write_table,
)

# ---------------------------------------------------------------------------------------------------------------
# readers


def keys(plan: InputPlan) -> list[str]:
    return [item.key for item in plan.items()]


def test_folder_is_recursive_sorted_and_images_only(tmp_path):
    write_photos(tmp_path / "b", 2)
    write_photos(tmp_path / "a" / "deep", 1, start=5)
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "a" / ".hidden.jpg").write_bytes(encode(0))
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.jpg").write_bytes(encode(0))
    (tmp_path / "UPPER.JPG").write_bytes(encode(1))
    plan = InputPlan([str(tmp_path)])
    expected = [
        f"{tmp_path}/UPPER.JPG",
        f"{tmp_path}/a/deep/img0005.webp",
        f"{tmp_path}/b/img0000.jpg",
        f"{tmp_path}/b/img0001.png",
    ]
    assert keys(plan) == expected
    assert plan.count() == 4
    assert all(item.source == item.key for item in plan.items())


def test_glob_and_explicit_files_keep_order_and_missing_file_is_an_item(tmp_path):
    write_photos(tmp_path, 3)
    missing = str(tmp_path / "gone.jpg")
    plan = InputPlan([str(tmp_path / "*.png"), missing, str(tmp_path / "img0000.jpg")])
    assert keys(plan) == [str(tmp_path / "img0001.png"), missing, str(tmp_path / "img0000.jpg")]
    item = list(plan.items())[1]
    assert (item.source, item.error) == (missing, None)  # it fails when decoded, as a row


def test_glob_matching_nothing_is_a_usage_error(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        InputPlan([str(tmp_path / "*.jpg")])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_manifest_resolves_relative_paths_and_carries_columns(tmp_path, fmt):
    write_photos(tmp_path / "data" / "imgs", 2)
    rows = [
        {"image": "imgs/img0000.jpg", "prompt": "a cat", "score": 4.5, "seed": 7},
        {"image": str(tmp_path / "data" / "imgs" / "img0001.png"), "prompt": "a dog", "score": 3.0, "seed": 8},
        {"image": "", "prompt": "empty", "score": 1.0, "seed": 9},
        {"image": "imgs/missing.jpg", "prompt": "gone", "score": 2.0, "seed": 10},
    ]
    manifest = tmp_path / "data" / f"manifest.{fmt}"
    write_table(manifest, pa.Table.from_pylist(rows))
    items = list(InputPlan([str(manifest)], path_column="image").items())
    base = tmp_path / "data" / "imgs"
    assert [i.key for i in items] == [
        str(base / "img0000.jpg"),
        str(base / "img0001.png"),
        f"{manifest}#row3",
        str(base / "missing.jpg"),
    ]
    # `score` would clash with the model's score column, so it is carried as input_score.
    assert items[0].columns == {"prompt": "a cat", "input_score": 4.5, "seed": 7}
    assert items[2].source is None and "empty 'image' in manifest row 3" in items[2].error
    assert items[3].error is None  # a missing file fails later, when decoded


def test_manifest_without_path_column_names_the_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,prompt\na.jpg,x\n")
    with pytest.raises(InputError, match=r"no 'path' column \(columns: file, prompt\).*--path-column"):
        InputPlan([str(manifest)])
    with pytest.raises(InputError, match="manifest not found"):
        InputPlan([str(tmp_path / "nope.jsonl")])


def test_csv_manifest_values_keep_their_text(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,score\n007,high\n")  # a path that looks like a number, a score that is not one
    [item] = InputPlan([str(manifest)]).items()
    assert (item.key, item.columns) == (str(tmp_path / "007"), {"input_score": "high"})


def test_tar_shard_streams_image_members_and_skips_sidecars(tmp_path):
    jpg, png = encode(1), encode(2, "png")
    shard = write_shard(
        tmp_path / "shard-000.tar",
        {"0001.jpg": jpg, "0001.json": b"{}", "0001.txt": b"caption", "sub/0002.png": png, "0003.cls": b"1"},
    )
    plan = InputPlan([str(shard)])
    items = list(plan.items())
    assert [i.key for i in items] == [f"{shard}/0001.jpg", f"{shard}/sub/0002.png"]
    assert [i.source for i in items] == [jpg, png]
    assert plan.count() is None  # a shard can only be counted by reading it through
    assert split_tar_key(items[1].key) == (str(shard), "sub/0002.png")
    assert read_tar_member(items[1].key) == png
    assert split_tar_key(str(tmp_path / "plain.jpg")) is None


def test_corrupt_shard_and_oversized_member_become_error_items(tmp_path):
    shard = write_shard(tmp_path / "ok.tar", {"a.jpg": encode(1), "b.jpg": encode(2) * 50})
    data = shard.read_bytes()
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(data[:1200])  # ends inside a.jpg's data
    big = list(InputPlan([str(shard)], max_member_bytes=len(encode(2)) * 10).items())
    assert big[0].error is None and "over the" in big[1].error and big[1].source is None
    cut = list(InputPlan([str(truncated)]).items())
    assert [i.key for i in cut] == [str(truncated)]
    assert cut[0].error.startswith("InputError: corrupt tar shard after 0 image(s)")


# ---------------------------------------------------------------------------------------------------------------
# tables

ROWS = [
    {"path": "001.jpg", "score": 0.5, "level": "fair", "error": None, "dim_looks": 0.25, "tags": ["a", "b"]},
    {
        "path": "002.jpg",
        "score": None,
        "level": None,
        "error": "ImageError: truncated",
        "dim_looks": None,
        "tags": None,
    },
]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_tables_round_trip_with_one_schema(tmp_path, fmt):
    path = tmp_path / f"t.{fmt}"
    write_table(path, pa.Table.from_pylist(ROWS), {"model": "m", "weights_sha256": "abc"})
    table = read_scores(path)
    assert table.column_names == ["path", "score", "level", "error", "dim_looks", "tags"]
    assert table.schema.field("score").type == pa.float64() and table.schema.field("path").type == pa.string()
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == ["001.jpg", "002.jpg"]  # a CSV "001.jpg" path is never a number
    assert rows[0]["score"] == 0.5 and rows[1]["score"] is None
    assert rows[0]["error"] is None and rows[1]["error"] == "ImageError: truncated"
    assert rows[0]["tags"] == (["a", "b"] if fmt != "csv" else '["a", "b"]')  # CSV has no nesting: JSON text
    assert read_provenance(path) == {"model": "m", "weights_sha256": "abc"}


def test_parquet_carries_provenance_without_its_sidecar(tmp_path):
    path = tmp_path / "t.parquet"
    write_table(path, pa.Table.from_pylist(ROWS), {"model": "m"})
    (tmp_path / "t.parquet.provenance.json").unlink()
    assert read_provenance(path) == {"model": "m"}


def test_unknown_output_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown table format '.xlsx'"):
        ResumableWriter(tmp_path / "out.xlsx")


# ---------------------------------------------------------------------------------------------------------------
# resumable writer

SETTINGS = {"model": {"model": "tiny", "weights_sha256": "abc"}, "mode": "full"}


def row(i: int, **extra) -> dict:
    return {"path": f"img{i}.jpg", "score": i / 10, "level": "fair", "error": None, **extra}


def test_writer_finishes_atomically_and_reports_complete(tmp_path):
    out = tmp_path / "sub" / "out.parquet"
    with ResumableWriter(out, chunk_rows=2) as writer:
        assert writer.start(SETTINGS) == set()
        writer.write([row(0), row(1), row(2)])
        assert not out.exists()  # nothing at OUT until the run finishes
        totals = writer.finish({f"img{i}.jpg" for i in range(3)}, {**SETTINGS, "inputs": ["x"]})
    assert (totals.rows, totals.failed) == (3, 0)
    assert read_table(out)["path"].to_pylist() == ["img0.jpg", "img1.jpg", "img2.jpg"]
    assert not Path(f"{out}.partial").exists()
    provenance = json.loads(Path(f"{out}.provenance.json").read_text())
    assert provenance["rows"] == 3 and provenance["inputs"] == ["x"]
    again = ResumableWriter(out)
    assert again.complete and again.totals().rows == 3
    assert not ResumableWriter(out, overwrite=True).complete


def test_interrupted_run_resumes_with_its_keys_and_drops_a_torn_chunk(tmp_path):
    out = tmp_path / "out.jsonl"
    writer = ResumableWriter(out, chunk_rows=2)
    writer.start(SETTINGS)
    writer.write([row(0), row(1)])  # a chunk of 2: durable
    writer.write([row(2)])  # only buffered
    os.close(writer._lock)  # the process dies: no flush, the lock goes with it
    partial = Path(f"{out}.partial")
    (partial / ".chunk-000002.parquet.tmp-99999").write_bytes(b"PAR1 half a chunk")  # killed mid-write
    with ResumableWriter(out, chunk_rows=2) as resumed:
        assert not resumed.complete
        assert resumed.start(SETTINGS) == {"img0.jpg", "img1.jpg"}
        assert not list(partial.glob(".*.tmp*"))
        resumed.write([row(2), row(3, error="ImageError: x", score=None)])
        totals = resumed.finish({f"img{i}.jpg" for i in range(4)}, SETTINGS)
    assert (totals.rows, totals.failed) == (4, 1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in lines] == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"]


def test_crash_after_output_rename_reassembles_the_same_output(tmp_path):
    out = tmp_path / "out.csv"
    writer = ResumableWriter(out)
    writer.start(SETTINGS)
    writer.write([row(0), row(1)])
    writer.flush()
    os.close(writer._lock)
    out.write_text("stale or complete, either way\n")  # OUT exists but OUT.partial still does too
    with ResumableWriter(out) as resumed:
        assert not resumed.complete
        assert resumed.start(SETTINGS) == {"img0.jpg", "img1.jpg"}
        resumed.finish({"img0.jpg", "img1.jpg"}, SETTINGS)
    assert read_table(out)["path"].to_pylist() == ["img0.jpg", "img1.jpg"]


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "out.parquet"
    writer = ResumableWriter(out)
    writer.start(SETTINGS)
    writer.close()
    other = {"model": {"model": "tiny", "weights_sha256": "def"}, "mode": "fast"}
    with pytest.raises(OutputConflict, match=r"differ: mode, model.weights_sha256"):
        ResumableWriter(out).start(other)
    with ResumableWriter(out, overwrite=True) as fresh:
        assert fresh.start(other) == set()


def test_second_concurrent_run_is_refused(tmp_path):
    out = tmp_path / "out.parquet"
    with ResumableWriter(out) as first:
        first.start(SETTINGS)
        with pytest.raises(OutputConflict, match="another beholder run"):
            ResumableWriter(out).start(SETTINGS)


def test_finish_keeps_only_the_inputs_of_this_run_and_unifies_chunk_schemas(tmp_path):
    out = tmp_path / "out.parquet"
    with ResumableWriter(out, chunk_rows=1) as writer:
        writer.start(SETTINGS)
        # The first chunk has no dimension columns (an error row); later ones have them and a carried column.
        writer.write([{"path": "bad.jpg", "score": None, "level": None, "error": "ImageError: x"}])
        writer.write([row(1, dim_looks=0.5, prompt="p")])
        writer.write([row(2, dim_looks=0.7, prompt="q")])
        writer.finish({"bad.jpg", "img1.jpg"}, SETTINGS)
    table = pq.read_table(out)
    assert table.column_names == ["path", "score", "level", "error", "dim_looks", "prompt"]
    assert table.to_pylist()[0] == {
        "path": "bad.jpg",
        "score": None,
        "level": None,
        "error": "ImageError: x",
        "dim_looks": None,
        "prompt": None,
    }
    assert table["path"].to_pylist() == ["bad.jpg", "img1.jpg"]
