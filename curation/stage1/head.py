"""Per-view roadwork head: one logit per view from the backbone's CLS (and mean patch) token.

The head sees one view at a time, so the same weights score a tile or the global view; the
aggregator (:mod:`curation.stage1.aggregate`) turns view logits into the image logit.

Example:
    >>> import torch
    >>> from curation.stage1.head import ViewHead
    >>> head = ViewHead(hidden_size=32, use_patch_mean=True)
    >>> head(torch.zeros(5, 64)).shape
    torch.Size([5])
"""

from __future__ import annotations

import torch
from torch import nn

from curation.errors import ConfigError


class ViewHead(nn.Module):
    """Linear (``mlp_hidden=0``) or one-hidden-layer MLP head on a per-view feature.

    Args:
        hidden_size: backbone token width D; input features are [.., 2·D] (CLS ‖ mean patch).
        use_patch_mean: read the mean patch token too; otherwise only the CLS half is used, so a
            feature cache serves both variants.
        mlp_hidden: hidden width of the MLP; 0 for a linear probe.
        dropout: dropout before the last layer (training only).
    """

    def __init__(self, hidden_size: int, *, use_patch_mean: bool = True, mlp_hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        if hidden_size < 1 or mlp_hidden < 0 or not 0.0 <= dropout < 1.0:
            raise ConfigError(
                f"ViewHead needs hidden_size ≥ 1, mlp_hidden ≥ 0, dropout in [0, 1); "
                f"got {hidden_size}, {mlp_hidden}, {dropout}."
            )
        self.hidden_size = hidden_size
        self.use_patch_mean = use_patch_mean
        in_dim = hidden_size * (2 if use_patch_mean else 1)
        self.norm = nn.LayerNorm(in_dim)
        if mlp_hidden:
            self.mlp = nn.Sequential(
                nn.Linear(in_dim, mlp_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_hidden, 1)
            )
        else:
            self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, 1))

    def select(self, features: torch.Tensor) -> torch.Tensor:
        """The slice of the cached [.., 2·D] feature this head reads: [.., D] or [.., 2·D]."""
        if features.shape[-1] != 2 * self.hidden_size:
            raise ConfigError(
                f"Head expects features of width 2·{self.hidden_size}={2 * self.hidden_size} "
                f"(CLS ‖ mean patch); got {features.shape[-1]}. Was the cache built with another backbone?"
            )
        return features if self.use_patch_mean else features[..., : self.hidden_size]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [.., 2·D] → logits [..]."""
        return self.mlp(self.norm(self.select(features))).squeeze(-1)
