"""INPUT expansion, score tables in three formats, and the crash-safe resumable writer (no model needed)."""

from __future__ import annotations

import io
import json
import os
import tarfile
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
    read_tar_members,
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
    assert list(read_tar_members(str(shard), ["sub/0002.png"])) == [("sub/0002.png", "sub/0002.png", png)]
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
        totals = writer.finish([f"img{i}.jpg" for i in range(3)], {**SETTINGS, "inputs": ["x"]})
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
        totals = resumed.finish([f"img{i}.jpg" for i in range(4)], SETTINGS)
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
        resumed.finish(["img0.jpg", "img1.jpg"], SETTINGS)
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
        writer.finish(["bad.jpg", "img1.jpg"], SETTINGS)
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


# ---------------------------------------------------------------------------------------------------------------
# hostile inputs (issue 10): every one a row or a clear error, nothing lost


def test_keys_of_any_bytes_round_trip_through_their_text_form():
    from beholder.io import key_from_text, key_to_text

    for raw in [b"plain/a.jpg", b"caf\xc3\xa9.jpg", b"bad\xff.jpg", b"a\\b.jpg", b"a\\xff.jpg", b"\\\xfe\\\\x80"]:
        key = os.fsdecode(raw)
        text = key_to_text(key)
        text.encode("utf-8")  # always valid UTF-8: it fits Arrow, CSV and JSON
        assert key_from_text(text) == key
    assert key_to_text(os.fsdecode(b"bad\xff.jpg")) == "bad\\xff.jpg"
    assert key_to_text("caf\u00e9/a.jpg") == "caf\u00e9/a.jpg"  # ordinary keys are written unchanged
    assert key_from_text("C:\\photos\\a.jpg") == "C:\\photos\\a.jpg"  # a lone backslash from elsewhere reads as itself


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_non_utf8_file_name_is_scored_and_its_key_survives_every_format(tmp_path, fmt):
    folder = tmp_path / "d"
    write_photos(folder, 1)
    bad = os.path.join(os.fsencode(folder), b"bad\xff.jpg")
    with open(bad, "wb") as f:
        f.write(encode(3))
    items = list(InputPlan([str(folder)]).items())
    assert os.fsdecode(bad) in [i.key for i in items]
    out = tmp_path / f"out.{fmt}"
    with ResumableWriter(out) as writer:
        writer.start(SETTINGS)
        writer.write([{"path": i.key, "score": 0.5, "level": "fair", "error": None} for i in items])
        writer.finish([i.key for i in items], {**SETTINGS, "inputs": [os.fsdecode(bad)]})
    written = read_scores(out)["path"].to_pylist()
    assert f"{folder}/bad\\xff.jpg" in written
    from beholder.io import key_from_text

    assert os.fsencode(key_from_text(written[0])) == bad  # maps back to the very bytes of the file name
    assert json.loads(Path(f"{out}.provenance.json").read_text())["inputs"] == [os.fsdecode(bad)]
    # a score table is a manifest: its escaped keys lead back to the same files
    assert [i.key for i in InputPlan([str(out)]).items()] == [i.key for i in items]


def test_carried_column_of_two_types_becomes_text(tmp_path):
    write_photos(tmp_path, 3)
    (tmp_path / "a.csv").write_text("path,label\nimg0000.jpg,1\n")
    (tmp_path / "b.csv").write_text("path,label\nimg0001.png,hello\n")
    (tmp_path / "c.jsonl").write_text('{"path": "img0002.webp", "label": [1]}\n{"path": "x.jpg", "label": "x"}\n')
    items = list(InputPlan([str(tmp_path / m) for m in ("a.csv", "b.csv", "c.jsonl")]).items())
    out = tmp_path / "out.parquet"
    with ResumableWriter(out, chunk_rows=1) as writer:  # the types meet across chunks, at assembly
        writer.start(SETTINGS)
        writer.write([{"path": i.key, "score": 0.5, "level": "fair", "error": None, **i.columns} for i in items[:1]])
        writer.write([{"path": i.key, "score": 0.5, "level": "fair", "error": None, **i.columns} for i in items[1:]])
        writer.finish([i.key for i in items], SETTINGS)
    assert read_scores(out)["label"].to_pylist() == ["1", "hello", "[1]", "x"]


def test_manifest_with_score_and_input_score_keeps_both(tmp_path):
    (tmp_path / "m.csv").write_text("path,score,input_score,dim_looks\na.jpg,1,2,3\n")
    [item] = InputPlan([str(tmp_path / "m.csv")]).items()
    assert item.columns == {"input_input_score": 1, "input_score": 2, "input_dim_looks": 3}


def test_fifo_and_other_non_files_in_a_folder_are_error_items_never_opened(tmp_path):
    write_photos(tmp_path, 1)
    os.mkfifo(tmp_path / "pipe.jpg")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.png")
    (tmp_path / "notes.heic").write_bytes(b"x")
    (tmp_path / "logo.svg").write_text("<svg/>")
    (tmp_path / "old.jfif").write_bytes(encode(1))
    plan = InputPlan([str(tmp_path)])
    items = {os.path.basename(i.key): i for i in plan.items()}
    assert sorted(items) == ["dangling.png", "img0000.jpg", "old.jfif", "pipe.jpg"]
    assert "FIFO" in items["pipe.jpg"].error and items["pipe.jpg"].source is None
    assert "broken symbolic link" in items["dangling.png"].error
    assert plan.skipped == {".heic": 1, ".svg": 1}
    from beholder.io import describe_skipped

    assert describe_skipped(plan.skipped) == "2 file(s) that are not images beholder reads (.heic 1, .svg 1)"


def test_fifo_given_by_name_is_refused_without_blocking(tmp_path):
    from beholder.images import ImageError, load_image

    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(str(tmp_path / "pipe.jpg"))


def test_tar_members_with_one_name_get_distinct_keys(tmp_path):
    from beholder.io import locate

    shard = write_shard(tmp_path / "s.tar", {"same.jpg": encode(1), "x.txt": b"", "same.jpg#": encode(9)})
    with tarfile.open(shard, "a") as archive:  # a second member named same.jpg
        info = tarfile.TarInfo("same.jpg")
        info.size = len(encode(2))
        archive.addfile(info, io.BytesIO(encode(2)))
    items = list(InputPlan([str(shard)]).items())
    assert [i.key for i in items] == [f"{shard}/same.jpg", f"{shard}/same.jpg#2"]
    assert [i.source for i in items] == [encode(1), encode(2)]
    where = locate(items[1].key)
    assert (where.path, where.member) == (str(shard), "same.jpg#2")
    assert [data for *_, data in read_tar_members(where.path, [where.member])] == [encode(2)]


def test_folder_named_like_a_shard_is_a_folder(tmp_path):
    from beholder.io import locate

    write_photos(tmp_path / "x.tar", 1)
    [item] = InputPlan([str(tmp_path / "x.tar")]).items()
    assert locate(item.key).member is None and split_tar_key(item.key) is None


def test_resumed_rows_come_out_in_input_order_each_once(tmp_path):
    out = tmp_path / "out.jsonl"
    writer = ResumableWriter(out, chunk_rows=2)
    writer.start(SETTINGS)
    writer.write([row(2), row(3)])  # an earlier run over other inputs, killed
    os.close(writer._lock)
    with ResumableWriter(out, chunk_rows=2) as resumed:
        assert resumed.start(SETTINGS) == {"img2.jpg", "img3.jpg"}
        resumed.write([row(0), row(1), row(4), row(3)])  # inputs added before them; img3 written twice
        resumed.finish([f"img{i}.jpg" for i in range(5)], SETTINGS)
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == [f"img{i}.jpg" for i in range(5)]


def test_run_that_finds_output_completed_by_another_run_stops(tmp_path):
    from beholder.io import AlreadyComplete

    out = tmp_path / "out.csv"
    first = ResumableWriter(out)
    first.start(SETTINGS)
    second = ResumableWriter(out)
    assert not second.complete  # the first run is still going
    first.write([row(0)])
    first.finish(["img0.jpg"], SETTINGS)
    first.close()
    before = out.read_bytes()
    with pytest.raises(AlreadyComplete, match="completed by another run"):
        second.start(SETTINGS)
    assert out.read_bytes() == before and not Path(f"{out}.partial").exists()


def test_retry_failed_keeps_good_rows_and_redoes_failed_ones(tmp_path):
    out = tmp_path / "out.parquet"
    with ResumableWriter(out) as writer:
        writer.start(SETTINGS)
        writer.write([row(0), row(1, error="ImageError: x", score=None)])
        writer.finish(["img0.jpg", "img1.jpg"], SETTINGS)
    assert ResumableWriter(out).complete
    retry = ResumableWriter(out, retry_failed=True)
    assert not retry.complete
    with retry:
        assert retry.start(SETTINGS) == {"img0.jpg"}
        retry.write([row(1)])
        assert retry.finish(["img0.jpg", "img1.jpg"], SETTINGS).failed == 0
    assert read_scores(out)["path"].to_pylist() == ["img0.jpg", "img1.jpg"]
