"""The fused forward (beholder.model.fused) against transformers' own layers, its source of truth, and the one-pass
continuation of several questions (ChatBackbone.extend_each) against one pass per question.

float32: equal to 1e-5. bfloat16 keeps 8 significant bits, so any change in where a forward rounds moves its
outputs by bfloat16 rounding noise (a few 1e-2 at hidden states of magnitude 4); the fused kernels round at other
points than transformers' (bias + activation and the residual add inside the matmul, in float32, then once; the
layer scale folded into the weights), so the bf16 test asks that the fused bf16 forward be as close to the float32
forward as transformers' bf16 forward is.
"""

from __future__ import annotations

import argparse
import copy

import pytest
import torch

import beholder
from beholder.cli.common import add_model_options, load_options
from beholder.model.fused import fuse, linear
from beholder.model.fused.linear import FusedLinear
from beholder.scoring import Scorer
from beholder.testing import SIZES, build_model, make_image, naive_full


def _shape(vision: dict | None = None, text: dict | None = None) -> dict:
    shape = copy.deepcopy(SIZES["tiny"])
    shape["vision"].update(vision or {})
    shape["text"].update(text or {})
    return shape


# InternViT as the 300M tower has it (q/k/v biases) and as the 6B tower has it (q/k norms, RMSNorm); InternVL's two
# language models (Qwen2; InternLM2, which transformers holds as Llama); the Qwen-VL families' language models.
MODELS = {
    "internvl-qwen2": ("internvl", _shape(vision={"attention_bias": True})),
    "internvl-internlm2": (
        "internvl", _shape(vision={"use_qk_norm": True, "norm_type": "rms_norm"}, text={"model_type": "llama"})
    ),
    "qwen2_vl": ("qwen2_vl", "tiny"),
    "qwen2_5_vl": ("qwen2_5_vl", "tiny"),
    "qwen3_vl": ("qwen3_vl", "tiny"),
}
FUSED = {
    "internvl-qwen2": {"InternVLVisionLayer": 2, "Qwen2DecoderLayer": 2},
    "internvl-internlm2": {"InternVLVisionLayer": 2, "LlamaDecoderLayer": 2},
    "qwen2_vl": {"Qwen2VLDecoderLayer": 2},
    "qwen2_5_vl": {"Qwen2_5_VLDecoderLayer": 2},
    "qwen3_vl": {"Qwen3VLTextDecoderLayer": 2},
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def pair(request):
    """(transformers' model, the same weights fused and prepacked for oneDNN, name): random layer scales, so
    folding them is tested."""
    backbone, size = MODELS[request.param]
    model = build_model(backbone, seed=0, size=size)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.hf_model.named_parameters():
            if "lambda_" in name:  # InternViT's layer scales: all 0.1 at initialisation
                param.copy_(torch.randn(param.shape, generator=generator))
    fused = copy.deepcopy(model)
    fused.fused = fuse(fused.hf_model)
    return model, fused, request.param


def _hidden(model, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Last hidden states of [prefix | overall question] for two images of one tile count, in float32."""
    scorer = Scorer(model)
    visuals = [scorer.prepare(make_image(200, 120, seed=i)).visual for i in (1, 2)]
    prefix, images = model._batch_inputs(visuals)
    images = {k: v.to(dtype) if v.is_floating_point() else v for k, v in images.items()}
    with torch.inference_mode():
        hidden, _ = model.backbone.encode(model._ids(prefix + model.question_ids, 2), images)
    return hidden.float()


def test_fused_layers_are_the_ones_listed(pair):
    _, fused, name = pair
    assert fused.fused == FUSED[name]
    assert sum(isinstance(m, FusedLinear) for m in fused.hf_model.modules()) == 4 * sum(FUSED[name].values())


def test_fused_forward_equals_transformers_in_float32(pair):
    model, fused, _ = pair
    torch.testing.assert_close(_hidden(fused), _hidden(model), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kernels", ["oneDNN on plain weights", "F.linear (no oneDNN, as on CUDA)"])
def test_every_kernel_path_equals_transformers(pair, kernels, monkeypatch):
    """Not prepacked, the fused layers run oneDNN on the plain weights; without oneDNN (as on CUDA), F.linear and
    in-place epilogues: the same result either way."""
    model = pair[0]
    if kernels.startswith("F.linear"):
        monkeypatch.setattr(linear, "onednn_runs", lambda x: False)
    fused = copy.deepcopy(model)
    fuse(fused.hf_model, prepack=False)
    assert not any(m.packed for m in fused.hf_model.modules() if isinstance(m, FusedLinear))
    torch.testing.assert_close(_hidden(fused), _hidden(model), rtol=0, atol=1e-5)


def test_fused_bfloat16_is_as_close_to_float32_as_transformers_bfloat16(pair):
    model = pair[0]
    reference = _hidden(model)
    plain_model = copy.deepcopy(model).to(torch.bfloat16)
    fused_model = copy.deepcopy(plain_model)  # fused in its final dtype, as beholder.load does
    fuse(fused_model.hf_model)
    plain = (_hidden(plain_model, torch.bfloat16) - reference).abs()
    ours = (_hidden(fused_model, torch.bfloat16) - reference).abs()
    assert ours.mean() <= 1.1 * plain.mean()
    assert ours.max() <= 1.5 * plain.max()


def test_fused_scores_equal_transformers_end_to_end(pair):
    model, fused, _ = pair
    images = [make_image(200, 120, seed=3), make_image(64, 64, seed=4), make_image(100, 300, seed=5)]
    for ours, theirs in zip(Scorer(fused).score(images, full=True), Scorer(model).score(images, full=True)):
        assert ours.error is None and theirs.error is None
        assert ours.score == pytest.approx(theirs.score, abs=1e-5)
        for head, value in theirs.heads.items():
            assert ours.heads[head] == pytest.approx(value, abs=1e-5)
        for dimension, value in theirs.dimensions.items():
            assert ours.dimensions[dimension] == pytest.approx(value, abs=1e-5)


def test_hidden_state_capture_still_sees_fused_layers(pair):
    """transformers' output_hidden_states finds layers by class: the fused ones subclass those they replace."""
    model, fused, _ = pair
    visual = Scorer(model).prepare(make_image(200, 120, seed=6)).visual
    theirs, ours = naive_full(model, visual), naive_full(fused, visual)
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_questions_in_one_pass_equal_one_pass_each(pair, attention):
    """Questions of different lengths continuing one prefix side by side, under a block-diagonal mask, give each
    question's last hidden state as its own continuation does."""
    model = copy.deepcopy(pair[0])
    model.hf_model.set_attn_implementation(attention)
    scorer = Scorer(model)
    visuals = [scorer.prepare(make_image(200, 120, seed=i)).visual for i in (7, 8)]
    prefix, images = model._batch_inputs(visuals)
    questions = [model._ids(ids, 2) for ids in (model.question_ids, model.expert_question_ids, model.question_ids[:3])]
    assert len({q.shape[1] for q in questions}) == 3
    with torch.inference_mode():
        _, context = model.backbone.encode(model._ids(prefix, 2), images, keep_cache=True)
        together = model.backbone.extend_each(questions, context)
        alone = [model.backbone.extend(ids, context)[:, -1] for ids in questions]
        assert context.cache.get_seq_length() == context.length  # rewound
    for ours, theirs in zip(together, alone):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_load_fuses_by_default_and_records_it(tiny_internvl, tmp_path):
    scorer, plain = beholder.load(tiny_internvl), beholder.load(tiny_internvl, fused=False)
    assert scorer.provenance["fused"] == {"InternVLVisionLayer": 2, "Qwen2DecoderLayer": 2}
    assert plain.provenance["fused"] == {}
    with pytest.raises(ValueError, match="fused=False"):
        beholder.model.folder.save_model(scorer.model, tmp_path / "copy")


def test_no_fuse_flag_reaches_load():
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    assert load_options(parser.parse_args([]))["fused"] is True
    assert load_options(parser.parse_args(["--no-fuse"]))["fused"] is False


def test_prepacked_weights_replace_the_plain_ones_and_refuse_to_move():
    fused = build_model("internvl")
    fuse(fused.hf_model)
    layers = [m for m in fused.hf_model.modules() if isinstance(m, FusedLinear)]
    assert all(m.packed and m.weight.device.type == "meta" for m in layers)  # the plain copies are released
    with pytest.raises(RuntimeError, match="fused=False"):
        fused.hf_model.to(torch.bfloat16)


def test_fuse_refuses_a_model_in_training_mode():
    model = build_model("internvl")
    with pytest.raises(ValueError, match="eval mode"):
        fuse(model.hf_model.train())


def test_a_layer_whose_activation_has_no_fused_kernel_keeps_transformers_forward():
    model = build_model("internvl", size=_shape(vision={"hidden_act": "quick_gelu"}))
    assert fuse(model.hf_model) == {"Qwen2DecoderLayer": 2}
