"""`annotate` as a batched pipeline command: the inputs `score` takes, batches of --batch-size, a resumable
table with provenance, errors as rows, and the official sampling settings as an option."""

from __future__ import annotations

import json
from pathlib import Path

from image_files import encode, write_broken, write_photos, write_shard

from beholder.cli import main
from beholder.io import InputPlan, read_provenance, read_scores
from beholder.pipeline import MemorySink, annotate_inputs
from beholder.testing import make_image


def test_batched_annotation_is_what_one_at_a_time_gives(internvl_scorer, monkeypatch):
    images = [make_image(64, 48, seed=i) for i in range(4)] + [make_image(48, 96, seed=9)]
    one_by_one = [internvl_scorer.annotate([image], batch_size=1, max_new_tokens=10)[0] for image in images]
    calls = []
    generate = internvl_scorer.model.annotate
    monkeypatch.setattr(internvl_scorer.model, "annotate", lambda visuals, **kw: calls.append(len(visuals))
                        or generate(visuals, **kw))
    batched = internvl_scorer.annotate(images + [b"not an image"], batch_size=4, max_new_tokens=10)
    assert sorted(calls) == [1, 4]  # two shapes: a batch of 4, a batch of 1
    assert [a.text for a in batched[:5]] == [a.text for a in one_by_one]
    assert batched[5].text is None and "cannot decode" in batched[5].error


def test_cli_annotates_folders_manifests_and_shards_into_a_table(tmp_path, tiny_internvl, capsys):
    photos = write_photos(tmp_path / "photos", 3)
    write_broken(tmp_path / "photos" / "broken")
    (tmp_path / "m.csv").write_text(f"path,prompt\n{photos[0]},a\nmissing.jpg,b\n")
    shard = write_shard(tmp_path / "s.tar", {"x.jpg": encode(5)})
    out = tmp_path / "notes.parquet"
    argv = ["annotate", str(tmp_path / "photos"), str(tmp_path / "m.csv"), str(shard), "-m", str(tiny_internvl),
            "-o", str(out), "--batch-size", "4", "--max-new-tokens", "6", "--no-progress"]
    assert main(argv) == 5  # four broken files and a missing one
    rows = read_scores(out).to_pylist()
    assert len(rows) == 3 + 4 + 1 + 1
    assert [r["path"] for r in rows][-2:] == [str(tmp_path / "missing.jpg"), f"{shard}/x.jpg"]
    assert sum(r["error"] is None and isinstance(r["text"], str) for r in rows) == 4
    assert list(rows[0])[:3] == ["path", "error", "text"] and "prompt" in rows[0]
    provenance = read_provenance(out)
    assert provenance["mode"] == "annotate" and provenance["generation"] == {"do_sample": False, "max_new_tokens": 6}
    assert "annotated 9 image(s)" in capsys.readouterr().err
    assert main(argv) == 5 and "is complete (9 rows, 5 failed)" in capsys.readouterr().err
    sampled = tmp_path / "sampled.jsonl"
    assert main([*argv[:6], "-o", str(sampled), "--sample", "--max-new-tokens", "4", "--no-progress"]) == 5
    assert json.loads(Path(f"{sampled}.provenance.json").read_text())["generation"] == {
        "do_sample": True, "max_new_tokens": 4
    }


def test_sampling_defaults_to_the_official_1024_new_tokens(internvl_scorer, tmp_path):
    write_photos(tmp_path, 1)
    sink = MemorySink()
    seen = {}
    original = internvl_scorer.annotate_prepared

    def spy(prepared, **kwargs):
        seen.update(kwargs)
        return original(prepared, **{**kwargs, "max_new_tokens": 2})

    internvl_scorer.annotate_prepared = spy
    try:
        annotate_inputs(internvl_scorer, InputPlan([str(tmp_path)]).items(), sink, sample=True, progress=False)
    finally:
        del internvl_scorer.annotate_prepared
    assert seen == {"batch_size": 8, "do_sample": True, "max_new_tokens": 1024}
    assert sink.provenance["generation"] == {"do_sample": True, "max_new_tokens": 1024}
