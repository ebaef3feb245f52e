"""beholder's defaults see what the released models' reference code sees (REFERENCE.md section 7), held to the
restatements in tests/references.py; each opt-in departure changes exactly what it names."""

from __future__ import annotations

import dataclasses

import chat_layout as cl
import numpy as np
import pytest
import references as ref
from PIL import Image, ImageOps
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import beholder
from beholder.cli import main
from beholder.config import FORMAT_VERSION, ModelConfig
from beholder.images import DecodeConfig, load_image
from beholder.io import InputPlan, OutputConflict, ResumableWriter, read_provenance
from beholder.model.aesthetic import level_token_ids
from beholder.pipeline import MemorySink, run_settings, score_inputs
from beholder.preprocess import SQUARE_VIEWS, PreprocessConfig, decode_image, normalize, stack_views
from beholder.presets import preset
from beholder.testing import build_model, make_image

ORIENTATION = 0x0112


def camera_jpeg(path, size=(3001, 2003), seed=0, orientation=None):
    """A large photo-like JPEG with a camera's EXIF block (make, model, and an orientation when given)."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "beholder", "synthetic camera"
    if orientation:
        exif[ORIENTATION] = orientation
    make_image(*size, seed=seed).save(path, "JPEG", quality=92, exif=exif)
    return path


def rgba_png(path):
    """A PNG with a transparent left half whose hidden colour is not white (what convert("RGB") keeps)."""
    pixels = np.asarray(make_image(64, 48, seed=5).convert("RGBA")).copy()
    pixels[:, :32, 3] = 0
    pixels[:, 32:, 3] = 128
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def views(config, image):
    return normalize(stack_views(SQUARE_VIEWS[config.mode](config, image)), config.mean, config.std)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


# ---- decoding ---------------------------------------------------------------------------------------------------


def test_large_jpeg_decodes_in_full_and_tiles_as_internvl(tmp_path):
    path = camera_jpeg(tmp_path / "large.jpg")
    config = PreprocessConfig()  # InternVL: 448 px tiles, up to 12 + thumbnail
    image = decode_image(path, config)
    assert same(image, ref.open_rgb(path))
    expected = ref.build_transform(ref.internvl_tiles(ref.open_rgb(path), 448, 12), ref.IMAGENET_MEAN,
                                   ref.IMAGENET_STD)
    assert expected.shape == (7, 3, 448, 448)  # a 3x2 grid and the thumbnail
    assert np.abs(views(config, image) - expected).max() <= 1e-6


def test_draft_decoding_is_an_opt_in_that_changes_only_the_decode_scale(tmp_path):
    path = camera_jpeg(tmp_path / "large.jpg")
    config = PreprocessConfig(decode=DecodeConfig(draft=True))
    drafted = decode_image(path, config)
    with Image.open(path) as reference:  # the same file through libjpeg's DCT scaling, nothing else changed
        reference.draft("RGB", config.draft_size(3001, 2003))
        assert same(drafted, reference.convert("RGB"))
    assert drafted.size == (1501, 1002)  # 1/2 scale still covers the 3x2 grid of 448 px tiles
    png = tmp_path / "large.png"
    make_image(900, 600).save(png)
    assert same(decode_image(png, config), ref.open_rgb(png))  # not a JPEG: nothing to draft


def test_exif_orientation_is_ignored_unless_asked(tmp_path):
    path = camera_jpeg(tmp_path / "phone.jpg", size=(320, 240), orientation=6)
    assert same(load_image(path), ref.open_rgb(path))  # seen as stored, 320 x 240
    upright = load_image(path, DecodeConfig(exif_transpose=True))
    assert same(upright, ImageOps.exif_transpose(ref.open_rgb(path))) and upright.size == (240, 320)
    plain = camera_jpeg(tmp_path / "plain.jpg", size=(320, 240))  # no orientation: the opt-in changes nothing
    assert same(load_image(plain, DecodeConfig(exif_transpose=True)), ref.open_rgb(plain))


def test_transparency_is_dropped_as_convert_rgb_drops_it_unless_white_is_asked(tmp_path):
    path = rgba_png(tmp_path / "cutout.png")
    dropped = load_image(path)
    assert same(dropped, ref.open_rgb(path))
    assert np.asarray(dropped)[:, :32].mean() < 200  # the colour under the transparent half, not white
    white = np.asarray(load_image(path, DecodeConfig(alpha="white"))).astype(int)
    rgba = np.asarray(Image.open(path).convert("RGBA")).astype(int)
    assert (white[:, :32] == 255).all()  # transparent: white
    blended = (rgba[:, 32:, :3] * 128 + 255 * 127 + 127) // 255  # half transparent: over white
    assert np.abs(white[:, 32:] - blended).max() <= 1
    opaque = tmp_path / "opaque.png"
    make_image(40, 30).save(opaque)
    assert same(load_image(opaque, DecodeConfig(alpha="white")), ref.open_rgb(opaque))


# ---- square views -----------------------------------------------------------------------------------------------


def test_pad_fill_is_truncated_as_the_references_write_it():
    image = make_image(120, 50, seed=2)
    config = PreprocessConfig(mode="pad", image_size=64, pad_fill=ref.IMAGENET_MEAN)
    assert config.fill_colour() == ref.pad_fill(ref.IMAGENET_MEAN) == (123, 116, 103)
    square = ref.expand2square(image, ref.pad_fill(ref.IMAGENET_MEAN)).resize((64, 64), Image.Resampling.BICUBIC)
    expected = ref.build_transform([square], ref.IMAGENET_MEAN, ref.IMAGENET_STD)
    assert np.abs(views(config, image) - expected).max() <= 1e-6
    rounded = dataclasses.replace(config, pad_rounding="round")
    assert rounded.fill_colour() == (124, 116, 104)  # round(123.675), round(116.28), round(103.53)


def test_qalign_preset_pads_with_the_truncated_clip_mean_and_normalises_with_clip():
    config = preset("qalign").preprocess
    assert config.fill_colour() == (122, 116, 104)
    assert (config.mean, config.std) == (ref.CLIP_MEAN, ref.CLIP_STD)
    for size in [(200, 90), (60, 150), (77, 77)]:
        image = make_image(*size, seed=sum(size))
        assert np.abs(views(config, image) - ref.qalign_pixels(image, 448)).max() <= 1e-6


# ---- prompts ----------------------------------------------------------------------------------------------------


def _prompt_ids(model, expert=False):
    return list(model.prefix_ids(12) + (model.expert_question_ids if expert else model.question_ids))


def _reference_ids(model, *, swift, expert=False):
    prompt = model.config.prompt
    question = prompt.expert_question if expert else prompt.question
    query = cl.original_query("Hermes-2", prompt.system, question, 12, swift=swift)
    return model.tokenizer(query)["input_ids"] + model._encode(
        prompt.expert_answer_prefix if expert else prompt.answer_prefix)


def test_an_empty_system_message_still_writes_the_system_turn():
    model = build_model(preset_name="qalign")  # InternVL2 template with an empty system message
    assert model.config.prompt.system == "" and model.config.prompt.after_image is None
    assert _prompt_ids(model) == _reference_ids(model, swift=False)
    dropped = type(model)(model.hf_model, model.tokenizer, model.config.replace(
        prompt=dataclasses.replace(model.config.prompt, system_turn="when_set")))
    turn = model.tokenizer("<|im_start|>system\n<|im_end|>")["input_ids"]
    assert _prompt_ids(model) == turn + _prompt_ids(dropped)


def test_humanaesexpert_scores_in_its_training_layout():
    model = build_model(preset_name="humanaesexpert")
    assert model.config.prompt.after_image == "\n\n"
    assert _prompt_ids(model) == _reference_ids(model, swift=True)  # "</img>\n\n{question}"
    chat = type(model)(model.hf_model, model.tokenizer, model.config.replace(
        prompt=dataclasses.replace(model.config.prompt, after_image=None)))
    assert _prompt_ids(chat) == _reference_ids(chat, swift=False)  # InternVL's chat layout: "</img>\n{question}"
    assert _prompt_ids(model, expert=True) == _reference_ids(model, swift=True, expert=True)


def _word_tokenizer(vocab):
    """A SentencePiece-like tokenizer: texts are encoded with a leading "▁", vocabulary entries can be anything."""
    tokenizer = Tokenizer(models.WordLevel({"<unk>": 0, **vocab}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>")


def test_level_tokens_are_vocabulary_tokens_first_then_encoded_and_ambiguity_is_an_error():
    assert level_token_ids(_word_tokenizer({"aa": 1, "ab": 2}), ("aa", "ab")) == [1, 2]  # literal (encodes to unk)
    assert level_token_ids(_word_tokenizer({"▁aa": 3, "▁ab": 4}), ("aa", "ab")) == [3, 4]  # encoded
    with pytest.raises(ValueError, match="'aa' is vocabulary token 1 but encodes to token 3"):
        level_token_ids(_word_tokenizer({"aa": 1, "ab": 2, "▁aa": 3}), ("aa", "ab"))
    with pytest.raises(ValueError, match="'ac' is not in the vocabulary"):
        level_token_ids(_word_tokenizer({"aa": 1}), ("aa", "ac"))


# ---- scoring ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camera_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("camera")
    for i, orientation in enumerate([None, 6, 3, 8]):
        camera_jpeg(folder / f"IMG_{i:04d}.jpg", size=(2400 + 97 * i, 1600 - 61 * i), seed=i, orientation=orientation)
    return folder


def test_scoring_large_camera_jpegs_by_default_equals_full_size_decoding(camera_folder, tiny_internvl):
    scorer = beholder.load(tiny_internvl)
    config = scorer.config.preprocess
    paths = sorted(str(p) for p in camera_folder.iterdir())
    item = scorer.prepare(paths[1])
    expected = ref.build_transform(ref.internvl_tiles(ref.open_rgb(paths[1]), config.image_size, config.max_tiles),
                                   config.mean, config.std)
    assert np.abs(item.visual.pixels - expected).max() <= 1e-6
    sink = MemorySink()
    score_inputs(scorer, InputPlan([str(camera_folder)]).items(), sink, progress=False)
    reference = scorer.score([ref.open_rgb(p) for p in paths])
    assert [row["path"] for row in sink.rows] == paths
    assert [row["score"] for row in sink.rows] == [r.score for r in reference]  # identical, not close
    drafted = beholder.load(tiny_internvl, decode={"draft": True}).score(paths)
    assert [r.score for r in drafted] != [r.score for r in reference]


def test_opt_ins_are_recorded_and_a_resume_with_other_decoding_is_refused(tmp_path, tiny_internvl):
    plain = beholder.load(tiny_internvl)
    opted = beholder.load(tiny_internvl, decode={"draft": True, "exif_transpose": True, "alpha": "white"})
    assert plain.provenance["overrides"] == {}
    assert plain.provenance["preprocess"]["decode"] == {"draft": False, "exif_transpose": False, "alpha": "drop"}
    assert opted.provenance["overrides"] == {"preprocess.decode.draft": True, "preprocess.decode.exif_transpose": True,
                                             "preprocess.decode.alpha": "white"}
    assert opted.provenance["preprocess"]["decode"] == {"draft": True, "exif_transpose": True, "alpha": "white"}
    out = tmp_path / "scores.jsonl"
    writer = ResumableWriter(out)
    writer.start(run_settings(plain, full=True))  # an interrupted run: OUT.partial holds its settings
    writer.close()
    with ResumableWriter(out) as again, pytest.raises(OutputConflict, match=r"scorer.preprocess.decode.draft"):
        again.start(run_settings(opted, full=True))
    with pytest.raises(ValueError, match="decode.alpha: 'black' is not one of"):
        beholder.load(tiny_internvl, decode={"alpha": "black"})


def test_a_format_1_folder_decodes_like_the_references(tiny_internvl):
    data = ModelConfig.load(tiny_internvl).to_dict()
    old = {**data, "format_version": 1, "preprocess": {**data["preprocess"], "draft": True}}
    del old["preprocess"]["decode"], old["preprocess"]["pad_rounding"]
    del old["prompt"]["system_turn"], old["prompt"]["after_image"]
    config = ModelConfig.from_dict(old)
    assert config.preprocess.decode == DecodeConfig() and config.preprocess.pad_rounding == "truncate"
    assert config.prompt.system_turn == "always" and config.prompt.after_image is None
    assert config.format_version == FORMAT_VERSION


def test_cli_opt_ins_reach_the_output_provenance(tmp_path, tiny_internvl):
    image = tmp_path / "a.png"
    rgba_png(image)
    out = tmp_path / "scores.jsonl"
    flags = ["--draft-decode", "--exif-transpose", "--alpha", "white", "--no-progress"]
    assert main(["score", str(image), "-m", str(tiny_internvl), "-o", str(out), *flags]) == 0
    provenance = read_provenance(out)
    assert provenance["overrides"] == {"preprocess.decode.draft": True, "preprocess.decode.exif_transpose": True,
                                       "preprocess.decode.alpha": "white"}
    default = tmp_path / "default.jsonl"
    assert main(["score", str(image), "-m", str(tiny_internvl), "-o", str(default), "--no-progress"]) == 0
    assert read_provenance(default)["preprocess"]["decode"]["alpha"] == "drop"
