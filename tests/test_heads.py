import pytest
import torch
from torch import nn

from beholder.config import ExpertHeadConfig, HeadsConfig, MetaVoterConfig
from beholder.model.heads import AestheticHeads, ExpertHead, LevelHead, MetaVoter
from beholder.standard import DIMENSIONS


def test_level_head_is_expected_value_over_selected_logits():
    torch.manual_seed(0)
    lm_head = nn.Linear(8, 50, bias=False)
    head = LevelHead([3, 7, 11, 13, 40], [1, 2, 3, 4, 5])
    hidden = torch.randn(4, 8)
    full_logits = lm_head(hidden)  # what a naive implementation computes: every vocabulary row
    probs = full_logits[:, [3, 7, 11, 13, 40]].softmax(-1)
    expected = (probs * torch.tensor([1.0, 2, 3, 4, 5])).sum(-1)
    logits = head.logits(hidden, lm_head)
    assert logits.shape == (4, 5)
    assert torch.allclose(head.expectation(logits), expected, atol=1e-6)
    assert torch.allclose(head.normalise(expected), (expected - 1) / 4, atol=1e-6)


def test_token_as_score_expectation_spans_0_to_100():
    head = LevelHead(list(range(101)), list(range(101)))
    peaked = torch.full((1, 101), -1e4)
    peaked[0, 73] = 0
    assert head.expectation(peaked).item() == pytest.approx(73.0)
    assert head.expectation(torch.zeros(1, 101)).item() == pytest.approx(50.0)
    assert head.normalise(torch.tensor(73.0)).item() == pytest.approx(0.73)


def test_level_head_rejects_bad_token_sets():
    with pytest.raises(ValueError, match="distinct"):
        LevelHead([1, 1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="one weight per token"):
        LevelHead([1, 2], [1.0])


def test_expert_head_follows_the_hierarchy():
    torch.manual_seed(0)
    head = ExpertHead(16, ExpertHeadConfig(ffn_hidden=8))
    hidden = torch.randn(3, 16)
    out = head(hidden)
    assert out.shape == (3, 12)
    leaves = head.leaves(hidden)
    # leaves in official positions
    for i, key in enumerate(("facial_brightness", "facial_feature_clarity", "facial_skin_tone", "facial_structure",
                             "facial_contour_clarity", "outfit", "body_shape", "looks", "environment")):
        assert torch.allclose(out[:, DIMENSIONS.index(key)], leaves[:, i])
    facial = head.face(leaves[:, 0:5])[:, 0]
    appearance = head.appearance(leaves[:, 5:8])[:, 0]
    overall = head.overall(torch.stack([leaves[:, 8], facial, appearance], -1))[:, 0]
    assert torch.allclose(out[:, DIMENSIONS.index("facial_aesthetic")], facial)
    assert torch.allclose(out[:, DIMENSIONS.index("general_appearance_aesthetic")], appearance)
    assert torch.allclose(out[:, DIMENSIONS.index("overall")], overall)


def test_expert_head_is_sparse():
    """A face leaf must not reach the appearance parent: its gradient there is exactly zero."""
    torch.manual_seed(1)
    head = ExpertHead(4, ExpertHeadConfig(ffn_hidden=0))
    hidden = torch.randn(2, 4)
    leaves = head.leaves(hidden).detach().requires_grad_(True)
    appearance = head.appearance(leaves[:, 5:8]).sum()
    (grad,) = torch.autograd.grad(appearance, leaves)
    assert torch.all(grad[:, :5] == 0) and torch.all(grad[:, 8] == 0) and torch.any(grad[:, 5:8] != 0)


def test_metavoter_is_linear_batchnorm_relu_linear_in_eval():
    torch.manual_seed(0)
    voter = MetaVoter(MetaVoterConfig(hidden=6)).eval()
    bn = voter.net[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    lm, reg, exp = torch.rand(5), torch.rand(5), torch.rand(5)
    x = torch.stack([lm, reg, exp], -1)
    z = x @ voter.net[0].weight.T + voter.net[0].bias
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    expected = torch.relu(z) @ voter.net[3].weight[0] + voter.net[3].bias[0]
    assert torch.allclose(voter(lm, reg, exp), expected, atol=1e-6)


def test_heads_config_validation():
    with pytest.raises(ValueError, match="MetaVoter"):
        AestheticHeads(8, HeadsConfig(regression=None, fast="level"), [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="heads.fast"):
        AestheticHeads(8, HeadsConfig(fast="vote"), [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="needs heads"):
        AestheticHeads(8, HeadsConfig(regression=None, expert=None, metavoter=None), [1, 2, 3, 4, 5])
