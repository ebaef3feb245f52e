"""Hostile inputs through the real commands with the tiny model (issue 10): every one becomes a row or a clear
error, and `select --copy-to` reaches the very file that was scored."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from image_files import encode, write_photos, write_shard

from beholder.cli import main
from beholder.io import key_from_text, read_scores


def score(*args: object) -> int:
    return main(["score", *map(str, args), "--no-progress"])


def test_non_utf8_file_names_and_a_fifo_are_scored_printed_and_copied(tmp_path, tiny_internvl, capsys):
    folder = tmp_path / "d"
    write_photos(folder, 1)
    bad = os.path.join(os.fsencode(folder), b"bad\xff.jpg")
    Path(os.fsdecode(bad)).write_bytes(encode(7))
    os.mkfifo(folder / "pipe.jpg")  # opening it would block forever
    out = tmp_path / "scores.csv"
    assert score(folder, "-m", tiny_internvl, "-o", out) == 1  # the FIFO failed; the run finished
    rows = {os.path.basename(r["path"]): r for r in read_scores(out).to_pylist()}
    assert sorted(rows) == ["bad\\xff.jpg", "img0000.jpg", "pipe.jpg"]
    assert rows["bad\\xff.jpg"]["error"] is None and "FIFO" in rows["pipe.jpg"]["error"]
    assert os.fsencode(key_from_text(rows["bad\\xff.jpg"]["path"])) == bad
    best = tmp_path / "best"
    assert main(["select", str(out), "--min=-1e9", "--copy-to", str(best)]) == 0
    assert (best / os.fsdecode(b"bad\xff.jpg")).read_bytes() == encode(7)
    capsys.readouterr()
    assert score(os.fsdecode(bad), "-m", tiny_internvl) == 0  # printed, not a UnicodeEncodeError
    assert capsys.readouterr().out.startswith(f"{folder}/bad\\xff.jpg\n")


def test_select_copies_the_tar_member_that_was_scored(tmp_path, tiny_internvl):
    shard = write_shard(tmp_path / "s.tar", {"same.jpg": encode(1, size=(40, 90))})
    with tarfile.open(shard, "a") as archive:  # a second member of the same name, another image
        info = tarfile.TarInfo("same.jpg")
        info.size = len(encode(2))
        archive.addfile(info, io.BytesIO(encode(2)))
    out = tmp_path / "scores.jsonl"
    assert score(shard, "-m", tiny_internvl, "-o", out) == 0
    assert main(["select", str(out), "--top-k", "2", "-o", str(tmp_path / "kept.jsonl"), "--copy-to",
                 str(tmp_path / "best")]) == 0
    kept = [r["path"] for r in read_scores(tmp_path / "kept.jsonl").to_pylist()]
    assert sorted(kept) == [f"{shard}/same.jpg", f"{shard}/same.jpg#2"]
    members = {f"{shard}/same.jpg": encode(1, size=(40, 90)), f"{shard}/same.jpg#2": encode(2)}
    copied = [(tmp_path / "best" / name).read_bytes() for name in ("same.jpg", "same-1.jpg")]
    assert copied == [members[key] for key in kept]  # each kept row's own image


def test_select_resolves_relative_paths_wherever_it_runs(tmp_path, tiny_internvl, monkeypatch):
    work = tmp_path / "work"
    write_photos(work / "x.tar", 2)  # a folder named like a shard holds plain files
    monkeypatch.chdir(work)
    assert score("x.tar", "-m", tiny_internvl, "-o", "out/scores.jsonl") == 0
    assert read_scores(work / "out" / "scores.jsonl")["path"].to_pylist()[0] == "x.tar/img0000.jpg"
    monkeypatch.chdir(tmp_path)  # elsewhere: relative paths resolve as they did when scored (provenance)
    assert main(["select", "work/out/scores.jsonl", "--top-k", "2", "--copy-to", "a"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["img0000.jpg", "img0001.png"]
    (work / "out" / "scores.jsonl.provenance.json").unlink()  # no provenance: the table's own folder
    os.replace(work / "out" / "scores.jsonl", work / "scores.jsonl")
    assert main(["select", "work/scores.jsonl", "--top-k", "1", "--copy-to", "b"]) == 0
    assert len(list((tmp_path / "b").iterdir())) == 1


def test_evaluate_scores_failed_images_again_and_says_where_they_were_looked_for(tmp_path, tiny_internvl, capsys):
    images = write_photos(tmp_path / "images", 6)
    bench = tmp_path / "bench.csv"
    bench.write_text("path,score\n" + "".join(f"{p.name},{i / 10}\n" for i, p in enumerate(images)))
    argv = ["evaluate", "--model", str(tiny_internvl), "--benchmark", str(bench), "-o", str(tmp_path / "report"),
            "--bootstrap", "0", "--format", "json"]
    assert main([*argv, "--image-root", str(tmp_path / "wrong")]) == 101
    err = capsys.readouterr().err
    assert f"6 of 6 benchmark images could not be scored, e.g. {tmp_path}/wrong/img0000.jpg" in err
    assert "--image-root" in err and "Traceback" not in err
    assert main([*argv, "--image-root", str(tmp_path / "images")]) == 0  # not the failed predictions again
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["evaluations"][0]["coverage"]["n_scored"] == 6


def test_evaluate_can_score_everything_again(tmp_path, tiny_internvl):
    images = write_photos(tmp_path, 5)
    bench = tmp_path / "bench.csv"
    bench.write_text("path,score\n" + "".join(f"{p.name},{i / 10}\n" for i, p in enumerate(images)))
    argv = ["evaluate", "--model", str(tiny_internvl), "--benchmark", str(bench), "-o", str(tmp_path / "r"),
            "--bootstrap", "0", "--format", "json"]
    assert main(argv) == 0
    table = next((tmp_path / "r").glob("predictions-*.jsonl"))
    stamp = table.stat().st_mtime_ns
    assert main(argv) == 0 and table.stat().st_mtime_ns == stamp  # reused
    assert main([*argv, "--overwrite"]) == 0 and table.stat().st_mtime_ns != stamp


def test_an_error_row_names_the_problem_not_a_file_object(tmp_path, internvl_scorer):
    (tmp_path / "notes.jpg").write_text("not an image\n")
    [result] = internvl_scorer.score([str(tmp_path / "notes.jpg")])
    assert result.error == "ImageError: cannot decode image: no image format recognised (not an image, or corrupt)"
