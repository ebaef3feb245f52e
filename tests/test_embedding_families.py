"""Image-tower predictors (LAION aesthetic v1 / v2, aesthetic-predictor-v2.5): their pickled heads convert into
beholder folders, the features equal transformers' get_image_features, each head equals its formula, the crop and
squash preprocessing equal what the reference pipelines compute, and the released names resolve offline."""

from __future__ import annotations

import collections
import hashlib
import json
import os

import numpy as np
import pytest
import references as ref
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

import beholder
from beholder import presets
from beholder.cli import main
from beholder.config import ModelConfig
from beholder.convert import ConversionError
from beholder.convert.embedding import UnsafePickleError, convert_embedding_checkpoint
from beholder.preprocess import CLIP_MEAN, CLIP_STD, PreprocessConfig, decode_image
from beholder.testing import make_image, make_tiny_model, tiny_tower_config

LAION_WIDTHS = (16, 1024, 128, 64, 16, 1)  # the released layout on the tiny tower's 16-wide projection
ATOL = 1e-5


def _text_config():
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=99,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory):
    """A whole random CLIP (image and text towers) in transformers' layout, as openai/clip-vit-large-patch14 is."""
    torch.manual_seed(0)
    vision = tiny_tower_config("clip").to_dict()
    model = CLIPModel(CLIPConfig(text_config=_text_config(), vision_config=vision, projection_dim=16)).eval()
    folder = tmp_path_factory.mktemp("clip")
    model.save_pretrained(folder)
    return folder, model


@pytest.fixture(scope="module")
def siglip_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    vision = tiny_tower_config("siglip").to_dict()
    model = SiglipModel(SiglipConfig(text_config=_text_config(), vision_config=vision)).eval()
    folder = tmp_path_factory.mktemp("siglip")
    model.save_pretrained(folder)
    return folder, model


def pickled_head(path, names, widths, dtype=torch.float32, seed=0):
    """A head saved as its authors save theirs: torch.save of an OrderedDict state dict."""
    g = torch.Generator().manual_seed(seed)
    state = collections.OrderedDict()
    for name, (n_in, n_out) in zip(names, zip(widths, widths[1:])):
        state[f"{name}.weight" if name else "weight"] = (torch.randn(n_out, n_in, generator=g) * 0.2).to(dtype)
        state[f"{name}.bias" if name else "bias"] = (torch.randn(n_out, generator=g) * 0.2).to(dtype)
    torch.save(state, path)
    return [(state[f"{n}.weight" if n else "weight"].float(), state[f"{n}.bias" if n else "bias"].float())
            for n in names]


def _images():
    return [make_image(80, 60, seed=0), make_image(59, 56, seed=1), make_image(40, 97, seed=2)]


def _check_parity(scorer, reference_model, layers):
    images = _images()
    items = [scorer.prepare(im) for im in images]
    pixels = torch.from_numpy(np.concatenate([it.visual.pixels for it in items]))
    with torch.no_grad():
        expected = reference_model.get_image_features(pixel_values=pixels).pooler_output
    assert torch.allclose(scorer.model.embed([it.visual for it in items]), expected, atol=ATOL, rtol=0)
    scores = [r.score for r in scorer.score(images, batch_size=2)]
    assert scores == pytest.approx(ref.predictor_head(expected, layers).tolist(), abs=ATOL)


def test_laion_v2_features_equal_get_image_features_and_its_head_its_formula(clip_checkpoint, tmp_path):
    folder, clip = clip_checkpoint
    layers = pickled_head(tmp_path / "head.pth", ["layers.0", "layers.2", "layers.4", "layers.6", "layers.7"],
                          LAION_WIDTHS)
    out = convert_embedding_checkpoint(folder, tmp_path / "head.pth", tmp_path / "laion", preset="laion-aesthetic-v2")
    assert not list(out.glob("*.pth")) and not list(out.glob("tokenizer*"))
    scorer = beholder.load(out)
    assert scorer.scale == (1.0, 10.0) and scorer.provenance["prompt"] is None
    _check_parity(scorer, clip, layers)


def test_aesthetic_predictor_v2_5_features_and_head(siglip_checkpoint, tmp_path):
    folder, siglip = siglip_checkpoint
    # as released: a bfloat16 state dict of `scoring_head`, Dropouts at the odd indices
    layers = pickled_head(tmp_path / "v25.pth", [f"scoring_head.{i}" for i in (0, 2, 4, 6, 8)],
                          (32, *LAION_WIDTHS[1:]), dtype=torch.bfloat16)  # the tiny SigLIP embedding is 32 wide
    out = convert_embedding_checkpoint(folder, tmp_path / "v25.pth", tmp_path / "v25",
                                       preset="aesthetic-predictor-v2.5")
    _check_parity(beholder.load(out), siglip, layers)


def test_laion_v1_is_one_linear_on_the_normalised_embedding(clip_checkpoint, tmp_path):
    folder, clip = clip_checkpoint
    layers = pickled_head(tmp_path / "v1.pth", [""], (16, 1))
    out = convert_embedding_checkpoint(folder, tmp_path / "v1.pth", tmp_path / "v1", preset="laion-aesthetic-v1")
    _check_parity(beholder.load(out), clip, layers)


def test_a_pickle_that_would_run_code_is_refused_without_running_it(clip_checkpoint, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"layers.0.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafePickleError, match="refuses it"):
        convert_embedding_checkpoint(clip_checkpoint[0], tmp_path / "evil.pth", tmp_path / "out",
                                     preset="laion-aesthetic-v2")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_head_of_another_layout_is_a_clear_error(clip_checkpoint, tmp_path):
    pickled_head(tmp_path / "short.pth", ["layers.0", "layers.2"], (16, 8, 1))
    with pytest.raises(ConversionError, match="(?s)not 5 Linear layers.*layers.2.weight"):
        convert_embedding_checkpoint(clip_checkpoint[0], tmp_path / "short.pth", tmp_path / "a",
                                     preset="laion-aesthetic-v2")
    pickled_head(tmp_path / "wide.pth", [f"layers.{i}" for i in (0, 2, 4, 6, 7)], (16, 512, 128, 64, 16, 1))
    with pytest.raises(ConversionError, match=r"(?s)layers.0 has weight \(512, 16\).*needs \(1024, 16\)"):
        convert_embedding_checkpoint(clip_checkpoint[0], tmp_path / "wide.pth", tmp_path / "b",
                                     preset="laion-aesthetic-v2")


# ---- preprocessing ------------------------------------------------------------------------------------------------


def _files(tmp_path):
    """An RGB JPEG, a palette PNG, a half-transparent PNG and a grey PNG, in sizes whose crop offset is a half."""
    paths = []
    make_image(301, 224, seed=3).save(tmp_path / "photo.jpg", quality=90)  # resized 301x224: offset (77 / 2) rounds up
    make_image(224, 227, seed=4).quantize(32).save(tmp_path / "palette.png")  # 227 - 224 = 3: round(1.5) = 2, floor 1
    rgba = np.asarray(make_image(250, 180, seed=5).convert("RGBA")).copy()
    rgba[:, :100, 3] = 60
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    make_image(160, 400, seed=6).convert("L").save(tmp_path / "grey.png")
    return [tmp_path / n for n in ("photo.jpg", "palette.png", "alpha.png", "grey.png")]


def _views(config, path):
    from beholder.preprocess import SQUARE_VIEWS, normalize, stack_views

    views = stack_views(SQUARE_VIEWS[config.mode](config, decode_image(path, config)))
    return normalize(views, config.mean, config.std)


def test_laion_crop_is_clip_load_preprocessing_on_the_file_as_opened(tmp_path):
    config = presets.PRESETS["laion-aesthetic-v2"].preprocess
    for path in _files(tmp_path):
        expected = ref.clip_preprocess(Image.open(path), 224)
        assert np.abs(_views(config, path) - expected).max() <= 1e-6, path.name


def test_crop_floor_with_rgb_first_is_transformers_clip_image_processor(tmp_path):
    config = PreprocessConfig(mode="crop", image_size=224, mean=CLIP_MEAN, std=CLIP_STD, crop_offset="floor")
    processor = CLIPImageProcessorPil()
    differs = 0
    for path in _files(tmp_path):
        expected = processor(images=[ref.open_rgb(path)], return_tensors="np")["pixel_values"]
        ours = _views(config, path)
        assert np.abs(ours - expected).max() <= 1e-5, path.name
        differs += not np.allclose(ours, ref.clip_preprocess(Image.open(path), 224), atol=1e-3)
    assert differs >= 2  # the palette (nearest resize, offset) and transparent files show the two conventions apart


def test_aesthetic_predictor_v2_5_squash_is_siglip_image_processor(tmp_path):
    config = presets.PRESETS["aesthetic-predictor-v2.5"].preprocess
    processor = SiglipImageProcessorPil(size={"height": 384, "width": 384}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    for path in _files(tmp_path):
        expected = processor(images=[ref.open_rgb(path)], return_tensors="np")["pixel_values"]
        assert np.abs(_views(config, path) - expected).max() <= 1e-5, path.name


def test_late_rgb_conversion_belongs_to_the_crop_mode(tmp_path):
    bad = PreprocessConfig(mode="squash", convert_rgb="after_crop")
    with pytest.raises(ValueError, match="needs the crop mode"):
        decode_image(_files(tmp_path)[0], bad)


# ---- released names, listing, older folders --------------------------------------------------------------------------


@pytest.fixture
def released_laion(clip_checkpoint, tmp_path, monkeypatch):
    """laion-aesthetic-v2 served offline: the hub snapshot is the tiny CLIP, the head a file:// URL."""
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append(repo_id)
        return str(clip_checkpoint[0])

    head = tmp_path / "published" / "sac+logos+ava1-l14-linearMSE.pth"
    head.parent.mkdir()
    layers = pickled_head(head, [f"layers.{i}" for i in (0, 2, 4, 6, 7)], LAION_WIDTHS, seed=3)
    digest = hashlib.sha256(head.read_bytes()).hexdigest()
    monkeypatch.setitem(presets.HEAD_FILES, "laion-aesthetic-v2",
                        presets.HeadFile(head.as_uri(), digest, "test"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setenv("BEHOLDER_CACHE", str(tmp_path / "cache"))
    return calls, head, layers


def test_a_released_predictor_downloads_its_head_once_and_converts_once(released_laion, clip_checkpoint):
    calls, head, layers = released_laion
    first = beholder.load("laion-aesthetic-v2")
    head.unlink()  # the second load needs neither the download nor a conversion
    second = beholder.load("laion-aesthetic-v2")
    assert first.folder == second.folder and calls == ["openai/clip-vit-large-patch14"] * 2
    assert first.config.hub_id == "openai/clip-vit-large-patch14"
    _check_parity(second, clip_checkpoint[1], layers)


def test_a_head_that_differs_from_its_pin_is_refused(released_laion, monkeypatch):
    _, head, _ = released_laion
    monkeypatch.setitem(presets.HEAD_FILES, "laion-aesthetic-v2", presets.HeadFile(head.as_uri(), "0" * 64, "test"))
    with pytest.raises(beholder.model.folder.ModelNotFoundError, match="not the 0000.*pins: refused"):
        beholder.load("laion-aesthetic-v2")


def test_the_image_tower_hub_id_alone_is_no_released_model():
    assert presets.find_release("openai/clip-vit-large-patch14") is None
    assert presets.find_release("laion-aesthetic-v2")[0] == "openai/clip-vit-large-patch14"


def test_cli_convert_takes_a_local_head(clip_checkpoint, tmp_path, capsys):
    pickled_head(tmp_path / "h.pth", [f"layers.{i}" for i in (0, 2, 4, 6, 7)], LAION_WIDTHS)
    code = main(["convert", str(clip_checkpoint[0]), str(tmp_path / "m"), "--preset", "laion-aesthetic-v2",
                 "--head", str(tmp_path / "h.pth")])
    assert code == 0 and ModelConfig.load(tmp_path / "m").backbone == "clip"
    torch.save({"layers.0.weight": torch.zeros(2)}, tmp_path / "odd.pth")
    code = main(["convert", str(clip_checkpoint[0]), str(tmp_path / "n"), "--preset", "laion-aesthetic-v2",
                 "--head", str(tmp_path / "odd.pth")])
    assert code == 101 and "not 5 Linear layers" in capsys.readouterr().err


def test_models_lists_every_family_with_scale_size_licence_and_hub_id(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, scale, size, licence, hub in [
        ("laion-aesthetic-v2", "1-10", "305M", "Apache-2.0", "openai/clip-vit-large-patch14"),
        ("laion-aesthetic-v1", "1-10", "304M", "MIT", "openai/clip-vit-large-patch14"),
        ("aesthetic-predictor-v2.5", "1-10", "430M", "AGPL-3.0", "google/siglip-so400m-patch14-384"),
        ("unipercept", "0-100", "~8B", "Apache-2.0", "Thunderbolt215215/UniPercept"),
        ("ernie-image-aes", "0-100", "~8B", "Apache-2.0", "baidu/ERNIE-Image-Aes"),
    ]:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert all(field in line.split() for field in (scale, size, licence, hub)), line
    assert "iaa,iqa,ista" in out


def test_a_format_2_folder_reads_its_regression_flag_as_the_linear_head(tmp_path):
    folder = make_tiny_model(tmp_path / "m")
    data = json.loads((folder / "beholder.json").read_text())
    data["format_version"] = 2
    data["heads"]["regression"] = True
    for key in ("crop_offset", "convert_rgb"):
        del data["preprocess"][key]
    del data["prompt"]["scores"]
    (folder / "beholder.json").write_text(json.dumps(data))
    scorer = beholder.load(folder)
    assert scorer.config.heads.regression == presets.RegressionHeadConfig()
    assert scorer.score([make_image()])[0].ok


def test_the_ray_engines_weightless_preprocessor_serves_image_towers(tmp_path):
    """Ray's decode workers build the model without weights: an image-tower folder (no tokenizer) must do too,
    and prepare and describe images exactly as the loaded model."""
    from beholder.distributed.preprocessor import load_preprocessor

    folder = make_tiny_model(tmp_path / "clip", backbone="clip")
    weightless, loaded = load_preprocessor(folder), beholder.load(folder)
    image = make_image(77, 50)
    assert np.array_equal(weightless.prepare(image).visual.pixels, loaded.prepare(image).visual.pixels)
    assert {k: v for k, v in weightless.provenance.items() if k != "device"} == {
        k: v for k, v in loaded.provenance.items() if k != "device"}


def test_annotating_with_an_image_tower_is_a_usage_error(tmp_path, capsys):
    folder = make_tiny_model(tmp_path / "clip", backbone="clip")
    make_image().save(tmp_path / "a.png")
    assert main(["annotate", str(tmp_path / "a.png"), "-m", str(folder)]) == 2
    assert "no language model to annotate with" in capsys.readouterr().err
