"""Multiple-instance aggregation: per-view logits [N, V] → image logit [N].

An image is roadwork if *any* view shows roadwork, so ``max`` is the natural MIL pooling (and the
recall-oriented choice); ``topk_mean`` (default K=2) is steadier against one noisy tile; ``mean``
is the classic test-time-augmentation average. Two learned poolings:

- ``attention``: gated attention MIL (Ilse et al., ICML 2018), a_v = softmax_v(wᵀ(tanh(V h_v) ⊙
  σ(U h_v))). Pooling the *logits* with these weights equals Ilse's pooling of embeddings followed by
  the classifier whenever the head is linear, and it keeps per-view logits for evidence.
- ``learned_weights``: one learned weight per view position (Shanmugam et al., ICCV 2021).

Example:
    >>> import torch
    >>> from curation.stage1.aggregate import topk_mean
    >>> topk_mean(torch.tensor([[0.0, 3.0, 1.0]]), k=2)
    tensor([2.])
"""

from __future__ import annotations

import torch
from torch import nn

from curation.errors import ConfigError, suggest

AGGREGATORS = ("max", "topk_mean", "mean", "attention", "learned_weights")
LEARNED_AGGREGATORS = ("attention", "learned_weights")


def max_pool(logits: torch.Tensor) -> torch.Tensor:
    """[N, V] → [N]: the most confident view; sigmoid is monotone, so this is also max probability."""
    return logits.max(dim=-1).values


def topk_mean(logits: torch.Tensor, k: int = 2) -> torch.Tensor:
    """[N, V] → [N]: mean of the ``k`` largest view logits (k is capped at V)."""
    if k < 1:
        raise ConfigError(f"`top_k` must be ≥ 1; got {k}.")
    k = min(k, logits.shape[-1])
    return logits.topk(k, dim=-1).values.mean(dim=-1)


def mean_pool(logits: torch.Tensor) -> torch.Tensor:
    """[N, V] → [N]: plain average of view logits."""
    return logits.mean(dim=-1)


def weighted_pool(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_v w_v·logit_v with weights [N, V] or [V] that sum to 1 over views → [N]."""
    return (logits * weights).sum(dim=-1)


class GatedAttention(nn.Module):
    """Ilse et al. gated attention weights over views: features [N, V, F] → weights [N, V]."""

    def __init__(self, feature_dim: int, hidden: int = 64):
        super().__init__()
        self.tanh_branch = nn.Linear(feature_dim, hidden)  # V in the paper
        self.gate_branch = nn.Linear(feature_dim, hidden)  # U in the paper
        self.score = nn.Linear(hidden, 1, bias=False)  # w in the paper

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        gated = torch.tanh(self.tanh_branch(features)) * torch.sigmoid(self.gate_branch(features))  # [N, V, H]
        return torch.softmax(self.score(gated).squeeze(-1), dim=-1)  # [N, V]


class LearnedViewWeights(nn.Module):
    """One weight per view position (global, each tile, flips): softmax of learned scores → [V].

    Initialised uniform, so an untrained model behaves like ``mean``.
    """

    def __init__(self, num_views: int):
        super().__init__()
        self.scores = nn.Parameter(torch.zeros(num_views))

    def forward(self) -> torch.Tensor:
        return torch.softmax(self.scores, dim=0)  # [V]


class Aggregator(nn.Module):
    """Dispatches to one pooling; learned poolings own their parameters.

    Args:
        kind: one of :data:`AGGREGATORS`.
        num_views: V, needed by ``learned_weights``.
        feature_dim: F of the per-view features, needed by ``attention``.
        top_k: K for ``topk_mean``.
        attention_hidden: hidden width of the attention branches.
    """

    def __init__(self, kind: str, *, num_views: int, feature_dim: int, top_k: int = 2, attention_hidden: int = 64):
        super().__init__()
        check_aggregator(kind)
        self.kind = kind
        self.top_k = top_k
        self.attention = GatedAttention(feature_dim, attention_hidden) if kind == "attention" else None
        self.view_weights = LearnedViewWeights(num_views) if kind == "learned_weights" else None

    def weights(self, logits: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor | None:
        """Per-view weights [N, V] for the learned poolings, None for the fixed ones."""
        if self.attention is not None:
            if features is None:
                raise ConfigError("The `attention` aggregator needs per-view features [N, V, F].")
            return self.attention(features)
        if self.view_weights is not None:
            if logits.shape[-1] != self.view_weights.scores.shape[0]:
                raise ConfigError(
                    f"`learned_weights` was built for {self.view_weights.scores.shape[0]} views; "
                    f"got {logits.shape[-1]}. The view policy must match the trained one."
                )
            return self.view_weights().expand_as(logits)
        return None

    def forward(self, logits: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """logits [N, V] (features [N, V, F] for ``attention``) → image logits [N]."""
        if self.kind == "max":
            return max_pool(logits)
        if self.kind == "topk_mean":
            return topk_mean(logits, self.top_k)
        if self.kind == "mean":
            return mean_pool(logits)
        return weighted_pool(logits, self.weights(logits, features))


def check_aggregator(kind: str) -> None:
    if kind not in AGGREGATORS:
        raise ConfigError(
            f"Unknown aggregator `{kind}`.{suggest(kind, AGGREGATORS)} Allowed: {', '.join(AGGREGATORS)}."
        )
