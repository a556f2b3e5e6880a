from __future__ import annotations

import math

import pytest
import torch

from curation.errors import ConfigError
from curation.stage1.aggregate import (
    Aggregator,
    GatedAttention,
    LearnedViewWeights,
    max_pool,
    mean_pool,
    topk_mean,
    weighted_pool,
)
from curation.stage1.head import ViewHead

LOGITS = torch.tensor([[-2.0, 1.0, 3.0, 0.0], [0.5, 0.5, -1.0, 4.0]])


def test_fixed_poolings_hand_computed():
    torch.testing.assert_close(max_pool(LOGITS), torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(topk_mean(LOGITS, 2), torch.tensor([2.0, 2.25]))
    torch.testing.assert_close(topk_mean(LOGITS, 9), mean_pool(LOGITS))  # K capped at V
    torch.testing.assert_close(mean_pool(LOGITS), torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(topk_mean(LOGITS, 1), max_pool(LOGITS))
    torch.testing.assert_close(weighted_pool(LOGITS, torch.tensor([0.5, 0.5, 0.0, 0.0])), torch.tensor([-0.5, 0.5]))
    with pytest.raises(ConfigError):
        topk_mean(LOGITS, 0)


def test_gated_attention_hand_computed():
    attention = GatedAttention(feature_dim=1, hidden=1)
    with torch.no_grad():
        attention.tanh_branch.weight.fill_(1.0), attention.tanh_branch.bias.zero_()
        attention.gate_branch.weight.zero_(), attention.gate_branch.bias.zero_()  # gate = 0.5
        attention.score.weight.fill_(2.0)
    weights = attention(torch.tensor([[[1.0], [0.0]]]))
    s = 2 * math.tanh(1.0) * 0.5  # score of view 0; view 1 scores 0
    expected = torch.tensor([[math.exp(s) / (math.exp(s) + 1), 1 / (math.exp(s) + 1)]])
    torch.testing.assert_close(weights, expected)


def test_attention_on_logits_equals_embedding_pooling_for_linear_head():
    torch.manual_seed(0)
    head = ViewHead(hidden_size=4, use_patch_mean=True)
    head.norm = torch.nn.Identity()  # keep the head affine so the identity holds exactly
    attention = GatedAttention(feature_dim=8)
    features = torch.randn(3, 5, 8)
    weights = attention(features)  # [3, 5]
    pooled_logits = weighted_pool(head(features), weights)
    pooled_embedding = head((weights.unsqueeze(-1) * features).sum(dim=1))
    torch.testing.assert_close(pooled_logits, pooled_embedding)


def test_learned_view_weights_start_as_mean_and_follow_scores():
    aggregator = Aggregator("learned_weights", num_views=4, feature_dim=8)
    torch.testing.assert_close(aggregator(LOGITS), mean_pool(LOGITS))
    weights = LearnedViewWeights(2)
    with torch.no_grad():
        weights.scores.copy_(torch.tensor([math.log(3.0), 0.0]))
    torch.testing.assert_close(weights(), torch.tensor([0.75, 0.25]))
    with pytest.raises(ConfigError, match="built for 4 views"):
        aggregator(torch.zeros(1, 3))


def test_aggregator_dispatch_and_errors():
    assert torch.equal(Aggregator("max", num_views=4, feature_dim=8)(LOGITS), max_pool(LOGITS))
    assert torch.equal(Aggregator("topk_mean", num_views=4, feature_dim=8, top_k=3)(LOGITS), topk_mean(LOGITS, 3))
    attention = Aggregator("attention", num_views=4, feature_dim=8)
    assert attention(LOGITS, torch.randn(2, 4, 8)).shape == (2,)
    with pytest.raises(ConfigError, match="needs per-view features"):
        attention(LOGITS)
    with pytest.raises(ConfigError, match="Did you mean `topk_mean`"):
        Aggregator("topk_mea", num_views=4, feature_dim=8)


def test_head_reads_cls_only_or_both_halves():
    features = torch.zeros(2, 3, 8)
    features[..., 4:] = 5.0  # patch-mean half
    cls_only = ViewHead(hidden_size=4, use_patch_mean=False)
    assert cls_only.select(features).shape == (2, 3, 4) and cls_only.select(features).abs().sum() == 0
    assert ViewHead(hidden_size=4, mlp_hidden=16)(features).shape == (2, 3)
    with pytest.raises(ConfigError, match="another backbone"):
        cls_only(torch.zeros(2, 6))
