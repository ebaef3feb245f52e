import dataclasses
import hashlib
import os
import shutil

import numpy as np
import pytest
import torch

import beholder
from beholder.config import ModelConfig
from beholder.cli import main
from beholder.io import Item
from beholder.model.backbones import normalize_tensor
from beholder.model.folder import ModelNotFoundError
from beholder.model.weights import PickleWeightsError, weights_sha256
from beholder.pipeline import MemorySink, score_inputs
from beholder.results import parse_annotation
from beholder.standard import DIMENSIONS, DISPLAY_NAMES
from beholder.testing import build_model, make_image, make_tiny_model, naive_full
from safetensors.torch import load_file


@pytest.fixture(params=["internvl", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def scorer(request):
    return request.getfixturevalue(f"{request.param}_scorer")


def test_public_contract(tiny_internvl, tmp_path):
    image = make_image(120, 90)
    image.save(tmp_path / "img.jpg")
    scorer = beholder.load(tiny_internvl, device="cpu", dtype="float32")
    [r] = scorer.score([str(tmp_path / "img.jpg")], full=True)
    assert r.ok and r.path == str(tmp_path / "img.jpg")
    assert set(r.dimensions) == set(DIMENSIONS)
    assert set(r.heads) == {"lm", "regression", "expert", "metavoter"}
    assert r.score == pytest.approx(r.heads["metavoter"]) and r.level in beholder.LEVELS
    assert r.dimensions["overall"] == pytest.approx(r.heads["expert"])


def test_prefix_shared_full_scoring_equals_naive_two_pass(scorer, varied_images):
    prepared = [scorer.prepare(image) for image in varied_images]
    assert len({p.visual.key for p in prepared}) >= 3  # several tile counts / grids are exercised
    results = scorer.score_prepared(prepared, full=True)
    for item, result in zip(prepared, results):
        ref = naive_full(scorer.model, item.visual)
        for head in ("lm", "regression", "expert", "metavoter"):
            assert result.heads[head] == pytest.approx(ref[head].item(), abs=1e-4), head
        assert torch.allclose(torch.tensor([result.dimensions[k] for k in DIMENSIONS]), ref["dimensions"], atol=1e-4)
        assert result.score == pytest.approx(ref["metavoter"].item(), abs=1e-4)


def test_fast_path_equals_the_overall_pass(scorer, varied_images):
    prepared = [scorer.prepare(image) for image in varied_images[:3]]
    for item, result in zip(prepared, scorer.score_prepared(prepared, full=False)):
        ref = naive_full(scorer.model, item.visual)
        assert set(result.heads) == {"lm", "regression"} and not result.dimensions
        assert result.heads["lm"] == pytest.approx(ref["lm"].item(), abs=1e-4)
        assert result.score == pytest.approx(ref["regression"].item(), abs=1e-4)  # humanaesexpert: fast = regression


def test_batch_equals_single_and_keeps_order(scorer, varied_images):
    batched = scorer.score(varied_images, full=True, batch_size=4)
    single = [scorer.score([image], full=True, batch_size=1)[0] for image in varied_images]
    for b, s in zip(batched, single):
        assert b.score == pytest.approx(s.score, abs=1e-5)
        assert b.dimensions == pytest.approx(s.dimensions, abs=1e-5)
    # same image twice in one batch group gives the same row twice
    twin = scorer.score([varied_images[0], varied_images[1], varied_images[0]], batch_size=8)
    assert twin[0].score == pytest.approx(twin[2].score, abs=1e-6)


def test_bad_inputs_become_error_rows_in_place(internvl_scorer, tmp_path):
    good = tmp_path / "good.png"
    make_image(64, 48).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    results = internvl_scorer.score([str(good), str(broken), str(tmp_path / "missing.png"), str(good)])
    assert [r.ok for r in results] == [True, False, False, True]
    assert "ImageError" in results[1].error and "decode" in results[1].error
    assert "cannot open" in results[2].error
    assert results[0].score == pytest.approx(results[3].score)


def test_save_load_round_trip_gives_identical_outputs(tiny_internvl, varied_images, tmp_path):
    from beholder.model.folder import save_model

    original = beholder.load(tiny_internvl, fused=False)  # a fused model holds packed weights: it is not saved
    copy = save_model(original.model, tmp_path / "copy")
    reloaded = beholder.load(copy, fused=False)
    a = original.score(varied_images, full=True)
    b = reloaded.score(varied_images, full=True)
    assert [r.to_row() for r in a] == [r.to_row() for r in b]
    assert reloaded.provenance["preprocess"]["mode"] == "tiles"


def _sha256(files):
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()


def test_weights_hash_covers_the_loaded_files_and_is_cached_by_size_and_mtime(tiny_internvl, tmp_path):
    folder = shutil.copytree(tiny_internvl, tmp_path / "copy")
    scorer = beholder.load(folder)
    files = scorer.model.weights_files
    assert [f.name for f in files] == ["model.safetensors", "heads.safetensors"]
    expected = _sha256(files)
    assert scorer.provenance["weights_sha256"] == expected
    # Same name, size and mtime: the stored hash comes back without the bytes being read again...
    weights = folder / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights_sha256(files) == expected
    # ...and a changed mtime hashes the new bytes.
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert weights_sha256(files) == _sha256(files) != expected


def test_pickle_weights_are_refused_unless_allowed_and_hashed_when_loaded(tiny_internvl, tmp_path, capsys):
    folder = shutil.copytree(tiny_internvl, tmp_path / "pickled")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(PickleWeightsError, match=r"only as pickle files \(pytorch_model.bin\).*allow_pickle=True"):
        beholder.load(folder)
    image = make_image(90, 60)
    image.save(tmp_path / "img.png")
    assert main(["score", str(tmp_path / "img.png"), "-m", str(folder), "--no-progress"]) == 101
    assert "--allow-pickle" in capsys.readouterr().err
    pickled, original = beholder.load(folder, allow_pickle=True), beholder.load(tiny_internvl)
    assert pickled.score([image])[0].score == pytest.approx(original.score([image])[0].score, abs=1e-6)
    assert [f.name for f in pickled.model.weights_files] == ["pytorch_model.bin", "heads.safetensors"]
    assert pickled.provenance["weights_sha256"] == _sha256(pickled.model.weights_files)
    assert main(["score", str(tmp_path / "img.png"), "-m", str(folder), "--allow-pickle", "--no-progress"]) == 0


def test_max_tiles_override_changes_preprocessing(tiny_internvl):
    wide = make_image(448, 56)
    assert beholder.load(tiny_internvl).prepare(wide).visual.key == (6 + 1,)  # 6 tiles + thumbnail
    assert beholder.load(tiny_internvl, max_tiles=2).prepare(wide).visual.key == (3,)


def test_bfloat16_on_cpu_is_close_to_float32(tiny_internvl, varied_images):
    fp32 = beholder.load(tiny_internvl).score(varied_images[:2])
    bf16 = beholder.load(tiny_internvl, dtype="bfloat16").score(varied_images[:2])
    assert beholder.load(tiny_internvl, dtype="bf16").model.hf_model.dtype == torch.bfloat16
    for a, b in zip(fp32, bf16):
        assert b.score == pytest.approx(a.score, abs=0.05)


def test_float16_on_cpu_is_refused(tiny_internvl):
    with pytest.raises(ValueError, match="float16 is not supported on CPU"):
        beholder.load(tiny_internvl, dtype="float16")


def test_annotate_is_greedy_decoding_of_the_12_dimension_question(internvl_scorer, varied_images):
    """The annotation is what picking the most likely next token, one full forward pass at a time, writes after
    the 12-dimension question (the naive loop, written out)."""
    model, image = internvl_scorer.model, varied_images[0]
    item = internvl_scorer.prepare(image)
    ids = list(model.prefix_ids(item.visual.n_tokens) + model.expert_question_ids)
    pixels = torch.from_numpy(item.visual.pixels)
    generated = []
    with torch.inference_mode():
        for _ in range(12):
            token = int(model.hf_model(input_ids=torch.tensor([ids]), pixel_values=pixels).logits[0, -1].argmax())
            if token in model._stop_ids():
                break
            ids.append(token)
            generated.append(token)
    assert len(generated) >= 3  # the random model writes something: the comparison is not of two empty texts
    [note] = internvl_scorer.annotate([image], max_new_tokens=12)
    assert note.error is None and note.text == model.tokenizer.decode(generated, skip_special_tokens=True)


def test_parse_annotation_reads_the_official_lines():
    text = "\n".join(f"{i}. {DISPLAY_NAMES[k]} : {lvl}" for i, (k, lvl) in
                     enumerate(zip(DIMENSIONS, ["good", "fair", "bad", "poor", "excellent"] * 3), 1))
    levels = parse_annotation(text + "\nsome trailing chatter")
    assert len(levels) == 12 and levels["facial_brightness"] == "good" and levels["overall"] == "fair"


@pytest.mark.parametrize("preset, lo, hi", [("artimuse", 0.0, 100.0), ("qalign", 1.0, 5.0)])
def test_level_only_presets_score_on_their_scale(tmp_path, preset, lo, hi):
    path = make_tiny_model(tmp_path / preset, preset_name=preset, seed=1)
    scorer = beholder.load(path)
    assert not scorer.has_full and scorer.scale == (lo, hi)
    image = make_image(90, 70)
    [r] = scorer.score([image])
    assert lo <= r.score <= hi and set(r.heads) == {"lm"}
    # the score is the expectation over the preset's tokens, computed here from the full logits
    model = scorer.model
    item = scorer.prepare(image)
    ids = torch.tensor([model.prefix_ids(item.visual.n_tokens) + model.question_ids])
    with torch.inference_mode():
        logits = model.hf_model(input_ids=ids, pixel_values=torch.from_numpy(item.visual.pixels)).logits[0, -1]
    probs = logits[model.heads.level.token_ids].softmax(-1)
    assert r.score == pytest.approx(float(probs @ model.heads.level.weights), abs=1e-4)
    for ask_for_full in (lambda: scorer.score([image], full=True),
                         lambda: score_inputs(scorer, [Item("a", image)], MemorySink(), full=True, progress=False)):
        with pytest.raises(ValueError, match="full scoring needs the Expert head and the MetaVoter"):
            ask_for_full()


def test_config_round_trip_and_strictness(tiny_internvl):
    config = ModelConfig.load(tiny_internvl)
    assert ModelConfig.from_dict(config.to_dict()) == config
    data = config.to_dict()
    data["heads"]["surprise"] = 1
    with pytest.raises(ValueError, match=r"ModelConfig.heads: unknown field\(s\) \['surprise'\]"):
        ModelConfig.from_dict(data)
    assert ModelConfig.from_dict({**config.to_dict(), "heads": {**config.to_dict()["heads"], "expert": None,
                                                               "metavoter": None}}).has_full is False


def test_load_errors_are_clear(tmp_path, monkeypatch, tiny_internvl):
    with pytest.raises(ModelNotFoundError, match="no model folder"):
        beholder.load(tmp_path / "nowhere")
    plain = tmp_path / "plain"
    shutil.copytree(tiny_internvl, plain)
    (plain / "beholder.json").unlink()
    with pytest.raises(ModelNotFoundError, match="not a beholder model folder"):
        beholder.load(plain)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="unreachable"):
        beholder.load("nobody/no-such-model")


def test_heads_mismatch_is_reported(tiny_internvl, tmp_path):
    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_internvl, folder)
    config = ModelConfig.load(folder)
    config = dataclasses.replace(config, heads=dataclasses.replace(config.heads, expert=dataclasses.replace(
        config.heads.expert, ffn_hidden=3)))
    config.save(folder)
    with pytest.raises(ValueError, match="head weights do not match"):
        beholder.load(folder)


@pytest.mark.parametrize("backbone, preset_name", [
    ("internvl", "humanaesexpert"),  # tiles, ImageNet mean/std
    ("internvl", "artimuse"),  # squash
    ("internvl", "qalign"),  # pad, CLIP mean/std
    ("clip", None),  # crop
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_raw_views_score_as_finished_ones_and_normalise_in_torch_to_the_bit(backbone, preset_name, dtype):
    """What distributed scoring carries between its stages: uint8 views, a quarter of the bytes. A GPU normalises
    them with normalize_tensor (the torch twin of the host's numpy normalize: the same bits, checked here on the
    CPU); a CPU model, or a batch mixing raw and finished visuals, finishes them on the host."""
    model = build_model(backbone, seed=0, preset_name=preset_name)
    model.hf_model.to(dtype)
    scorer, config = beholder.Scorer(model), model.config.preprocess
    images = [make_image(300, 200, seed=1), make_image(120, 260, seed=2)]
    finished = [scorer.prepare(image) for image in images]
    raw = [scorer.prepare(image, raw=True) for image in images]
    for f, r in zip(finished, raw):
        assert r.visual.pixels.dtype == np.uint8 and f.visual.pixels.dtype == np.float32
        assert r.visual.pixels.nbytes * 4 == f.visual.pixels.nbytes and r.visual.key == f.visual.key
        in_torch = normalize_tensor(torch.from_numpy(np.ascontiguousarray(r.visual.pixels)), config.mean, config.std)
        assert torch.equal(in_torch, torch.from_numpy(f.visual.pixels))
    inputs = model.backbone.model_inputs
    mixed = inputs([raw[0].visual, finished[1].visual])["pixel_values"]
    assert mixed.dtype == dtype
    assert torch.equal(mixed, inputs([finished[0].visual, finished[1].visual])["pixel_values"])
    assert [r.to_row() for r in scorer.score_prepared(raw)] == [r.to_row() for r in scorer.score_prepared(finished)]


def test_prepare_leaves_the_normalising_to_a_gpu_and_does_it_for_a_cpu(internvl_scorer, monkeypatch):
    image = make_image(120, 90)
    assert internvl_scorer.prepare(image).visual.pixels.dtype == np.float32  # a CPU model: finished here
    hf_class = type(internvl_scorer.model.backbone.model)
    monkeypatch.setattr(hf_class, "device", property(lambda self: torch.device("cuda")))
    assert internvl_scorer.prepare(image).visual.pixels.dtype == np.uint8  # a GPU normalises on arrival
    assert internvl_scorer.prepare(image, raw=False).visual.pixels.dtype == np.float32
