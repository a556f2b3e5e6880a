"""Fast exact training of a *linear* view head on half-precision cached features.

The head is LayerNorm(γ, β) → Linear(w, b). For one view x with mean μ and inverse std r, its logit
is ``r·(x − μ)·(γ⊙w) + β·w + b``. With the centred weight ``c = γ⊙w − mean(γ⊙w)`` the mean term
vanishes (``(x − μ)·c = x·c``, as c sums to zero), so::

    logit = r · (x · c) + (β·w + b)

One matrix-vector product per view on the cached fp16 features, no float copy of the data and no
per-sample Python. The per-view statistics (μ, σ²) come with the cache (:func:`view_stats`). On
CPU, PyTorch's fp16 matrix-vector product reads ~2 G elements/s where fp16→fp32 conversion of the
same data runs ~0.1 G/s, which is what makes 100k images × 10 views × 2,048 features × 5 epochs fit
in seconds (``bench/train_head.py``). Gradients flow to γ, β, w and b exactly as through
:class:`~curation.stage1.head.ViewHead`; only the rounding differs (fp16 products, fp32 scale).

Example:
    >>> import torch
    >>> from curation.stage1.aggregate import Aggregator
    >>> from curation.stage1.head import ViewHead
    >>> from curation.stage1.head_fast import FastLinearHead, supports_fast_head, view_stats
    >>> head, agg = ViewHead(4), Aggregator("topk_mean", num_views=3, feature_dim=8)
    >>> x = torch.randn(2, 3, 8)
    >>> fast = FastLinearHead(head, agg)
    >>> torch.allclose(fast(x.half(), view_stats(x.half(), 4))[0], head(x.half().float()), atol=1e-2)
    True
"""

from __future__ import annotations

import torch
from torch import nn

from curation.errors import ConfigError
from curation.stage1.aggregate import Aggregator
from curation.stage1.head import ViewHead

STATS_WIDTH = 4  # mean, var over CLS ‖ patch; mean, var over CLS only


def supports_fast_head(head: ViewHead, aggregator: Aggregator) -> bool:
    """True for a linear head without dropout and any aggregator that reads only view logits."""
    linear = len(head.mlp) == 2 and isinstance(head.mlp[1], nn.Linear)
    no_dropout = all(not isinstance(m, nn.Dropout) or m.p == 0.0 for m in head.mlp)
    return linear and no_dropout and aggregator.kind != "attention"


@torch.no_grad()
def view_stats(features: torch.Tensor, hidden_size: int, *, chunk_rows: int = 8192) -> torch.Tensor:
    """Per-view LayerNorm statistics [..., 4]: (mean, var) of CLS ‖ patch, then of CLS alone.

    Computed in float32 from the stored (possibly fp16-rounded) values, in row chunks so no float
    copy of the whole tensor is made. The cache stores these next to the features.
    """
    if features.shape[-1] != 2 * hidden_size:
        raise ConfigError(f"Features must be [..., 2·{hidden_size}]; got width {features.shape[-1]}.")
    flat = features.reshape(-1, features.shape[-1])  # [R, 2D]
    out = torch.empty(flat.shape[0], STATS_WIDTH, dtype=torch.float32)
    for start in range(0, flat.shape[0], chunk_rows):
        x = flat[start : start + chunk_rows].float()  # [r, 2D]
        var_all, mean_all = torch.var_mean(x, dim=-1, correction=0)
        var_cls, mean_cls = torch.var_mean(x[:, :hidden_size], dim=-1, correction=0)
        out[start : start + x.shape[0]] = torch.stack([mean_all, var_all, mean_cls, var_cls], dim=-1)
    return out.view(*features.shape[:-1], STATS_WIDTH)


class _RowDot(torch.autograd.Function):
    """x [R, F] (fp16/bf16/fp32, no grad) · w [F] (fp32) → [R] fp32, with the fp16 kernels both ways.

    Scales keep fp16 in range: the forward uses w/‖w‖₂ (|x·ŵ| ≤ ‖x‖₂), the backward g/‖g‖₁
    (|Σ g·x| ≤ max|x|); a non-finite result is recomputed in float32.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        if x.dtype == torch.float32:
            return x @ w
        scale = w.norm().clamp_min(1e-30)
        z = (x @ (w / scale).to(x.dtype)).float() * scale  # [R]
        return z if bool(torch.isfinite(z).all()) else x.float() @ w

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        rows = torch.nonzero(grad).squeeze(1)
        if len(rows) < len(grad) // 2:  # top-K/max pooling: only K of V views get a gradient
            x, grad = x.index_select(0, rows), grad.index_select(0, rows)
        if x.dtype == torch.float32:
            return None, x.t() @ grad
        scale = grad.abs().sum().clamp_min(1e-30)
        # x.t() @ column is PyTorch's fast fp16 path on CPU; a row vector times x is ~100× slower.
        out = (x.t() @ (grad / scale).to(x.dtype)[:, None]).squeeze(1).float() * scale  # [F]
        return None, out if bool(torch.isfinite(out).all()) else x.float().t() @ grad


class FastLinearHead(nn.Module):
    """The trainable head + aggregator over cached features, sharing their parameters.

    Args:
        head: a linear :class:`ViewHead` (see :func:`supports_fast_head`); trained in place.
        aggregator: the model's aggregator (its learned view weights, if any, train too).
    """

    def __init__(self, head: ViewHead, aggregator: Aggregator):
        super().__init__()
        if not supports_fast_head(head, aggregator):
            raise ConfigError("The fast head path needs a linear head without dropout and a non-attention aggregator.")
        self.head = head
        self.aggregator = aggregator

    def forward(self, features: torch.Tensor, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, V, 2D] (any float dtype), stats [B, V, 4] → (view logits [B, V], image logits [B])."""
        batch, views, width = features.shape
        hidden = self.head.hidden_size
        norm, linear = self.head.norm, self.head.mlp[1]
        w = linear.weight[0]  # [F]
        w_eff = norm.weight * w  # [F]
        b_eff = norm.bias @ w + linear.bias[0]
        centred = w_eff - w_eff.mean()  # [F], sums to 0
        var = stats[..., 1] if self.head.use_patch_mean else stats[..., 3]  # [B, V]
        if not self.head.use_patch_mean:  # zero weights on the patch half: no strided copy of x
            centred = torch.cat([centred, centred.new_zeros(hidden)])
        rstd = torch.rsqrt(var.float() + norm.eps)  # [B, V]
        dots = _RowDot.apply(features.reshape(batch * views, width), centred).view(batch, views)
        view_logits = rstd * dots + b_eff  # [B, V]
        return view_logits, self.aggregator(view_logits)
