"""Property: whatever a user's folders, manifests and shards hold, scoring finishes with one row per input.

Hypothesis generates file names of any bytes (not UTF-8, backslashes, quotes, newlines), good and broken image
files (empty, truncated, text, FIFOs), manifests (CSV or JSONL, with rows for missing and empty paths, and
carried columns whose values change type, some named like score columns) and WebDataset shards (with names
repeated), and scores them with the tiny model through the library's pipeline into a table of any format.
The expected rows are worked out here from the description, not from beholder's readers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_files import encode

from beholder.io import InputPlan, ResumableWriter, key_from_text, key_to_text, read_scores
from beholder.pipeline import score_inputs

GOOD = ("jpg", "png")
KINDS = (*GOOD, "empty", "truncated", "text", "fifo")
IMAGE_SUFFIXES = (b".jpg", b".png", b".JPG", b".jpeg")

names = st.binary(min_size=0, max_size=10).map(lambda b: b"f" + b.replace(b"/", b"%").replace(b"\0", b"%"))
files = st.lists(
    st.tuples(names, st.sampled_from((*IMAGE_SUFFIXES, b".txt")), st.sampled_from(KINDS)),
    max_size=6,
    unique_by=lambda f: f[0] + f[1],
)
values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(-1, 1, width=32), st.text(max_size=4),
    st.lists(st.integers(0, 2), max_size=2),
)
columns = st.lists(st.sampled_from(["label", "score", "input_score", "dim_looks", "prompt"]), unique=True, max_size=3)
manifest_rows = st.lists(st.tuples(st.one_of(st.integers(0, 5), st.sampled_from(["missing", "empty"])),
                                   st.lists(values, min_size=3, max_size=3)), max_size=5)
members = st.lists(st.tuples(st.sampled_from(["a.jpg", "b.png", "d/a.jpg", "c.txt"]), st.sampled_from(KINDS[:5])),
                   max_size=4)


def content(kind: str, seed: int) -> bytes:
    if kind in GOOD:
        return encode(seed, kind, (32, 24))
    jpeg = encode(seed, "jpg", (32, 24))
    return {"empty": b"", "truncated": jpeg[: len(jpeg) // 3], "text": b"not an image\n"}[kind]


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", 30)), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(files=files, columns=columns, rows=manifest_rows, manifest_format=st.sampled_from(["csv", "jsonl"]),
       members=members, output_format=st.sampled_from(["jsonl", "csv", "parquet"]))
def test_any_inputs_give_one_row_each_errors_for_the_bad_and_nothing_raised(
    internvl_scorer, files, columns, rows, manifest_format, members, output_format
):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = os.path.join(os.fsencode(root), b"in")
        os.mkdir(folder)
        expected: dict[str, bool] = {}  # key -> whether it scores, in input order
        paths = []
        for i, (name, suffix, kind) in enumerate(files):
            path = os.path.join(folder, name + suffix)
            paths.append((path, kind))
            if kind == "fifo":
                os.mkfifo(path)
            else:
                Path(os.fsdecode(path)).write_bytes(content(kind, i))
        for path, kind in sorted(paths, key=lambda p: os.fsdecode(p[0])):  # a folder: sorted, images only
            if path.lower().endswith(IMAGE_SUFFIXES):
                expected.setdefault(os.fsdecode(path), kind in GOOD)

        manifest = root / f"m.{manifest_format}"
        records, carrying = [], False
        for n, (target, cells) in enumerate(rows, 1):
            if target == "empty":
                value, key, ok = "", f"{manifest}#row{n}", False
            elif target == "missing" or target >= len(paths):
                value, key, ok = f"in/missing{n}.jpg", str(root / "in" / f"missing{n}.jpg"), False
            else:
                path, kind = paths[target]
                key = os.fsdecode(path)
                value, ok = key_to_text(os.path.relpath(key, root)), kind in GOOD
            records.append({"path": value, **dict(zip(columns, cells))})
            carrying = carrying or key not in expected  # a row's columns are carried when it comes first
            expected.setdefault(key, ok)
        write_manifest(manifest, records, ["path", *columns])

        shard = root / "s.tar"
        seen: dict[str, int] = {}
        with tarfile.open(shard, "w") as archive:
            for i, (name, kind) in enumerate(members):
                data = content(kind, 100 + i)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                if name.endswith(".txt"):
                    continue  # a sidecar, not an image
                seen[name] = seen.get(name, 0) + 1
                expected[f"{shard}/{name}" + (f"#{seen[name]}" if seen[name] > 1 else "")] = kind in GOOD

        plan = InputPlan([os.fsdecode(folder), str(manifest), str(shard)])
        out = root / f"out.{output_format}"
        with ResumableWriter(out, chunk_rows=3) as writer:
            summary = score_inputs(internvl_scorer, plan.items(), writer, batch_size=4, decode_workers=2,
                                   progress=False, total=plan.count())

        table = read_scores(out).to_pylist()
        assert [key_from_text(r["path"]) for r in table] == list(expected)  # one row each, in input order
        assert summary.rows == len(expected) and summary.failed == sum(not ok for ok in expected.values())
        for row, ok in zip(table, expected.values()):
            assert (row["error"] is None) == ok, row
            assert ok == (row["score"] is not None and math.isfinite(row["score"]))
        if carrying:
            carried = {"score": "input_input_score" if "input_score" in columns else "input_score",
                       "input_score": "input_score", "dim_looks": "input_dim_looks"}
            assert {carried.get(c, c) for c in columns} <= set(table[0])


def write_manifest(path: Path, records: list[dict], names: list[str]) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for r in records:
            writer.writerow(["" if r.get(n) is None else json.dumps(r[n]) if isinstance(r[n], list) else r[n]
                             for n in names])
