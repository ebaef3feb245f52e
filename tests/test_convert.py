"""Converting released checkpoints (InternVL chat layout) into beholder model folders, checked against an
independent forward pass written from the original module structure (tests/chat_layout.py), to 1e-4."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import chat_layout as cl
import pytest
import torch
from transformers import AutoTokenizer

import beholder
from beholder.cli import main
from beholder.config import FORMAT_VERSION
from beholder.convert import ConversionError, HeadLayoutError, convert_checkpoint
from beholder.convert.tokenizer import load_tokenizer
from beholder.model.folder import ModelNotFoundError
from beholder.presets import ARTIMUSE_QUESTION, PRESETS
from beholder.standard import DIMENSIONS, LEAVES
from beholder.testing import make_image, make_tokenizer

ATOL = 1e-4
IMAGE = make_image(120, 56, seed=3)  # a 2x1 grid of 56 px tiles + thumbnail: three tiles, 12 image tokens


@pytest.fixture(scope="module")
def qwen2_tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def internlm2_tokenizer():
    """The tiny tokenizer plus InternLM2's habit: a "<s>" BOS before every encoded text."""
    tokenizer = make_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "<s>"})
    tokenizer.add_bos_token = True
    return tokenizer


@pytest.fixture(scope="module")
def qwen2_with_heads(tmp_path_factory, qwen2_tokenizer):
    root = tmp_path_factory.mktemp("qwen2")
    heads = cl.head_tensors(torch.Generator().manual_seed(7))
    tensors = cl.write_checkpoint(root / "src", qwen2_tokenizer, llm="qwen2", template="Hermes-2", heads=heads)
    folder = convert_checkpoint(root / "src", root / "dst", preset="humanaesexpert-1b", expert_activation="gelu")
    return tensors, beholder.load(folder)


@pytest.fixture(scope="module")
def internlm2_without_heads(tmp_path_factory, internlm2_tokenizer):
    root = tmp_path_factory.mktemp("internlm2")
    tensors = cl.write_checkpoint(root / "src", internlm2_tokenizer, llm="internlm2", template="internlm2-chat",
                                  heads=None, seed=1, qk_norm=True, rms=True)
    folder = convert_checkpoint(root / "src", root / "dst", preset="artimuse")
    return tensors, beholder.load(folder)


def _reference_hidden(tensors, scorer, llm, suffix_ids, visual):
    ids = list(scorer.model.prefix_ids(visual.n_tokens) + suffix_ids)
    image_token = scorer.model.backbone.image_token_id
    return cl.last_hidden(tensors, ids, torch.from_numpy(visual.pixels), image_token, llm), ids


def _reference_level(tensors, scorer, llm, hidden):
    level = scorer.model.heads.level
    probs = (cl.lm_head(tensors, llm)[level.token_ids] @ hidden).softmax(-1)
    return probs @ level.weights


@torch.no_grad()
def test_qwen2_checkpoint_with_heads_matches_the_original_forward(qwen2_with_heads):
    tensors, scorer = qwen2_with_heads
    model = scorer.model
    visual = scorer.prepare(IMAGE).visual
    assert visual.pixels.shape[0] == 3
    hidden, ids = _reference_hidden(tensors, scorer, "qwen2", model.question_ids, visual)
    expert_hidden, _ = _reference_hidden(tensors, scorer, "qwen2", model.expert_question_ids, visual)

    native, _ = model.backbone.encode(torch.tensor([ids]), model.backbone.collate([visual]))
    assert torch.allclose(native[0, -1], hidden, atol=ATOL)
    out = model.score_full([visual])
    assert out.lm_native[0].item() == pytest.approx(_reference_level(tensors, scorer, "qwen2", hidden).item(), abs=ATOL)
    regression = hidden @ tensors["language_model.lm_regression_head.weight"][0]
    regression += tensors["language_model.lm_regression_head.bias"][0]
    assert out.regression[0].item() == pytest.approx(regression.item(), abs=ATOL)

    expert = cl.expert_head(tensors, expert_hidden)
    dims = dict(zip(DIMENSIONS, out.dimensions[0].tolist()))
    assert [dims[key] for key in LEAVES] == pytest.approx(expert["leaves"].tolist(), abs=ATOL)
    for key in ("facial_aesthetic", "general_appearance_aesthetic", "overall"):
        assert dims[key] == pytest.approx(expert[key].item(), abs=ATOL)
    lm = (out.lm_native[0] - 1) / 4
    voter = cl.metavoter(tensors, torch.stack([lm, regression, expert["overall"]]))
    assert out.metavoter[0].item() == pytest.approx(voter.item(), abs=ATOL)

    config = scorer.config
    assert (config.name, config.hub_id, config.license, config.scale) == (
        "humanaesexpert-1b", "KwaiVGI/HumanAesExpert-1B", "MIT", (0.0, 1.0))
    assert config.prompt.template == "internvl2" and config.preprocess.mode == "tiles"
    assert config.heads.expert.ffn_hidden == cl.EXPERT_FFN and config.heads.metavoter.hidden == cl.VOTER


@torch.no_grad()
def test_internlm2_checkpoint_without_heads_matches_the_original_forward(internlm2_without_heads):
    tensors, scorer = internlm2_without_heads
    model = scorer.model
    visual = scorer.prepare(IMAGE).visual  # artimuse preset: one squashed tile
    hidden, ids = _reference_hidden(tensors, scorer, "internlm2", model.question_ids, visual)
    assert ids[0] == model.tokenizer.bos_token_id  # "<s>" first, as the InternLM2 tokenizer encodes
    native, _ = model.backbone.encode(torch.tensor([ids]), model.backbone.collate([visual]))
    assert torch.allclose(native[0, -1], hidden, atol=ATOL)
    out = model.score_fast([visual])
    assert out.lm_native[0].item() == pytest.approx(_reference_level(tensors, scorer, "internlm2", hidden).item(),
                                                    abs=ATOL)
    heads = scorer.config.heads
    assert (heads.regression, heads.expert, heads.metavoter, heads.fast) == (None, None, None, "level")
    assert scorer.config.prompt.template == "internlm2-chat" and scorer.scale == (0.0, 100.0)


# HumanAesExpert (qwen2_with_heads) scores in the layout its heads were trained on (swift), ArtiMuse in its chat code's.
@pytest.mark.parametrize("fixture, template, swift", [("qwen2_with_heads", "Hermes-2", True),
                                                      ("internlm2_without_heads", "internlm2-chat", False)])
def test_prompt_ids_are_those_of_the_original_code(request, fixture, template, swift):
    _, scorer = request.getfixturevalue(fixture)
    model, prompt = scorer.model, scorer.config.prompt
    query = cl.original_query(template, prompt.system, prompt.question, 12, swift=swift)
    expected = model.tokenizer(query)["input_ids"]  # the chat code tokenises the whole query with special tokens
    assert list(model.prefix_ids(12) + model.question_ids) == expected + model._encode(prompt.answer_prefix)


def _checkpoint(tmp_path, tokenizer, heads=None, **kwargs) -> Path:
    cl.write_checkpoint(tmp_path / "src", tokenizer, llm="qwen2", template="Hermes-2", heads=heads, **kwargs)
    return tmp_path / "src"


def test_an_expert_head_that_does_not_fit_is_refused_listing_what_was_found(tmp_path, qwen2_tokenizer):
    heads = cl.head_tensors(torch.Generator().manual_seed(0))
    heads["language_model.expert_head.leaf_layer.weight"] = torch.zeros(12, cl.TEXT["hidden_size"])
    heads["language_model.expert_head.leaf_layer.bias"] = torch.zeros(12)
    src = _checkpoint(tmp_path, qwen2_tokenizer, heads)
    with pytest.raises(HeadLayoutError) as error:
        convert_checkpoint(src, tmp_path / "dst", expert_activation="gelu")
    message = str(error.value)
    assert "Linear(64, 9)" in message and "language_model.expert_head.leaf_layer.weight (12, 64)" in message
    assert "language_model.expert_head.overall_ffn.2.weight (1, 8)" in message
    assert not (tmp_path / "dst").exists()


def test_an_expert_activation_no_tensor_records_must_be_named(tmp_path, qwen2_tokenizer):
    src = _checkpoint(tmp_path, qwen2_tokenizer, cl.head_tensors(torch.Generator().manual_seed(0)))
    with pytest.raises(HeadLayoutError, match="--expert-activation") as error:
        convert_checkpoint(src, tmp_path / "dst")
    assert "language_model.expert_head.face_ffn.0.weight (8, 5)" in str(error.value)


def test_a_tensor_without_a_place_is_refused_not_dropped(tmp_path, qwen2_tokenizer):
    lora = "language_model.model.layers.0.self_attn.q_proj.lora_A.weight"
    src = _checkpoint(tmp_path, qwen2_tokenizer, extra={lora: torch.zeros(8, cl.TEXT["hidden_size"])})
    with pytest.raises(ConversionError, match="silently drop") as error:
        convert_checkpoint(src, tmp_path / "dst", preset="qalign")
    assert f"{lora} (8, 64)" in str(error.value)
    assert not list(tmp_path.glob("*dst*"))


def test_pickle_weights_are_never_loaded(tmp_path, qwen2_tokenizer):
    src = _checkpoint(tmp_path, qwen2_tokenizer)
    for shard in src.glob("*.safetensors"):
        shard.unlink()
    (src / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ConversionError, match="pickle"):
        convert_checkpoint(src, tmp_path / "dst", preset="qalign")


def test_a_checkpoint_without_heads_needs_a_preset_that_scores_without_them(tmp_path, qwen2_tokenizer):
    src = _checkpoint(tmp_path, qwen2_tokenizer)
    with pytest.raises(ConversionError, match="name its preset"):
        convert_checkpoint(src, tmp_path / "dst")
    with pytest.raises(HeadLayoutError, match="regression head .no tensors under language_model.lm_regression_head"):
        convert_checkpoint(src, tmp_path / "dst", preset="humanaesexpert-1b")


def test_internlm2_sentencepiece_tokenizer_is_rebuilt_without_remote_code(tmp_path):
    specials = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    byte_pieces = [(f"<0x{i:02X}>", 0.0, 6) for i in range(256)]
    merges = ["▁", "e", "x", "c", "l", "n", "t", "▁e", "ex", "ll", "en", "nt", "▁ex", "ell", "ent", "▁exc",
              "▁exce", "▁excell", "▁excellent"]
    normal = [(piece, -float(i), 1) for i, piece in enumerate(merges)]
    reserved = [("[UNUSED_TOKEN_145]", 0.0, 4), ("[UNUSED_TOKEN_146]", 0.0, 4)]
    pieces = specials + byte_pieces + normal + reserved
    (tmp_path / "tokenizer.model").write_bytes(cl.sentencepiece_model(pieces, add_dummy_prefix=False))
    n = len(pieces)
    added = {n - 2: "<|im_end|>", n - 1: "<|im_start|>", n: "<img>", n + 1: "</img>", n + 2: "<IMG_CONTEXT>"}
    config = {
        "tokenizer_class": "InternLM2Tokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "added_tokens_decoder": {str(i): {"content": c, "special": True} for i, c in added.items()},
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_tokenizer(tmp_path)
    assert {tokenizer.convert_tokens_to_ids(c): c for c in added.values()} == added
    assert tokenizer.tokenize(" excellent") == ["▁excellent"]
    text = "<|im_start|>user\n<img><IMG_CONTEXT></img> excellent<|im_end|>"
    ids = tokenizer.encode(text)
    assert ids[:3] == [1, n - 1, 0x75 + 3] and ids[-1] == n - 2  # BOS, <|im_start|>, byte fallback for "u"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\n excellent"
    tokenizer.save_pretrained(tmp_path / "saved")
    assert AutoTokenizer.from_pretrained(tmp_path / "saved").encode(text) == ids


# ---------------------------------------------------------------------------------------------------------------
# released ids: the hub is simulated, and no test may open a connection


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("tests must not use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch, no_network, qwen2_tokenizer):
    """snapshot_download served from a local folder laid out like huggingface_hub's cache; records each call."""
    import huggingface_hub

    snapshot = tmp_path / "hub" / "snapshots" / ("ab" * 20)
    cl.write_checkpoint(snapshot, qwen2_tokenizer, llm="qwen2", template="internvl2_5", heads=None, seed=2)
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setenv("BEHOLDER_CACHE", str(tmp_path / "cache"))
    return calls


def test_a_released_id_is_downloaded_and_converted_once_then_reused(fake_hub, tmp_path, monkeypatch):
    from beholder.hub import cache

    conversions = []
    monkeypatch.setattr(cache, "convert_checkpoint", lambda *a, **k: conversions.append(a) or convert_checkpoint(*a, **k))
    first = beholder.load("baidu/ERNIE-Image-Aes")
    second = beholder.load("ernie-image-aes")
    assert len(conversions) == 1 and first.folder == second.folder
    assert first.folder == tmp_path / "cache" / "converted" / f"format-{FORMAT_VERSION}" / f"baidu--ERNIE-Image-Aes--{'ab' * 20}"
    repo_id, kwargs = fake_hub[0]
    assert repo_id == "baidu/ERNIE-Image-Aes"
    assert not any(p.endswith((".bin", ".pt", ".py")) for p in kwargs["allow_patterns"])
    config = first.config
    assert (config.name, config.license, config.scale, config.prompt.question) == (
        "ernie-image-aes", "Apache-2.0", (0.0, 100.0), ARTIMUSE_QUESTION)
    [result] = first.score([IMAGE])
    assert result.ok and 0.0 <= result.score <= 100.0
    model, prompt = first.model, config.prompt
    query = cl.original_query("internvl2_5", prompt.system, prompt.question, 4)
    assert list(model.prefix_ids(4) + model.question_ids) == model.tokenizer(query)["input_ids"]


def test_artimuse_question_is_byte_exact():
    # sha256 of the question string in score() of the public ArtiMuse code (thunderbolt215/ArtiMuse @ eaef4c2)
    digest = "44add3d4d8e19034638648cf932161dde5dbc191851afac8e6d019cef7d5d6ad"
    for name in ("artimuse-10k", "artimuse-ava", "ernie-image-aes"):
        assert hashlib.sha256(PRESETS[name].prompt.question.encode()).hexdigest() == digest


def test_a_wrong_hub_id_is_a_clear_error(monkeypatch, no_network):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    def snapshot_download(repo_id, **kwargs):
        response = httpx2.Response(404, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{repo_id}"))
        raise RepositoryNotFoundError("404 Repository Not Found", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    with pytest.raises(ModelNotFoundError, match="no model 'KwaiVGI/HumanAesExpert-2B' on the hub.*Did you mean "
                                                 "KwaiVGI/HumanAesExpert-[18]B"):
        beholder.load("KwaiVGI/HumanAesExpert-2B")
    with pytest.raises(ModelNotFoundError, match="neither a released model.*Did you mean humanaesexpert-1b"):
        beholder.load("humanaesexpert-1")


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "network-down"])
def test_no_network_is_a_clear_error_naming_the_convert_command(tmp_path, monkeypatch, no_network, offline):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("BEHOLDER_CACHE", str(tmp_path / "cache"))
    unreachable = "cannot download 'baidu/ERNIE-Image-Aes': the hub is unreachable"
    with pytest.raises(ModelNotFoundError, match=unreachable) as exc:
        beholder.load("ernie-image-aes")
    assert str(exc.value).endswith(
        "beholder convert ERNIE-Image-Aes ERNIE-Image-Aes-beholder --preset ernie-image-aes")


@pytest.mark.parametrize("folder_name, preset, heads", [
    ("ERNIE-Image-Aes", "ernie-image-aes", False),
    ("HumanAesExpert-1B", "humanaesexpert-1b", True),
    ("my-checkpoint", None, False),
])
def test_a_raw_checkpoint_folder_is_answered_with_its_convert_command(tmp_path, qwen2_tokenizer, capsys, folder_name,
                                                                      preset, heads):
    src = tmp_path / folder_name
    tensors = cl.head_tensors(torch.Generator().manual_seed(0)) if heads else None
    cl.write_checkpoint(src, qwen2_tokenizer, llm="qwen2", template="Hermes-2", heads=tensors)
    with pytest.raises(ModelNotFoundError, match="It is a checkpoint in InternVL's chat layout") as exc:
        beholder.load(src)
    command = next(line.strip() for line in str(exc.value).splitlines() if line.strip().startswith("beholder convert"))
    expected = f"beholder convert {src} {tmp_path / (folder_name + '-beholder')} --preset {preset or 'PRESET'}"
    assert command == expected + (" --expert-activation NAME" if heads else "")
    if preset is None:
        assert "where PRESET is the model it is: one of humanaesexpert-1b" in str(exc.value)
        return
    # the command works as printed once NAME is filled in, and the message's --model then loads
    argv = command.replace("NAME", "gelu").split()[1:]
    assert main(argv) == 0
    capsys.readouterr()
    scorer = beholder.load(tmp_path / (folder_name + "-beholder"))
    assert scorer.config.name == preset


def test_cli_convert_and_models(tmp_path, qwen2_tokenizer, capsys):
    src = _checkpoint(tmp_path, qwen2_tokenizer)
    assert main(["convert", str(src), str(tmp_path / "out"), "--preset", "qalign"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert beholder.load(tmp_path / "out").scale == (1.0, 5.0)
    assert main(["convert", str(src), str(tmp_path / "out"), "--preset", "qalign"]) == 101
    assert "already exists" in capsys.readouterr().err
    rows = {row["name"]: row for row in beholder.list_models()}
    assert (rows["humanaesexpert-8b"]["scale"], rows["humanaesexpert-8b"]["license"]) == ("0-1", "MIT")
    assert (rows["ernie-image-aes"]["scale"], rows["ernie-image-aes"]["hub_id"]) == ("0-100", "baidu/ERNIE-Image-Aes")
