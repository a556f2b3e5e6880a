"""Gatekeeper loss (Rabanser et al. 2025, arXiv 2502.19335) for fine-tuning the stage-1 head.

Plain cross-entropy pushes every sample towards confidence, including the ones the head gets
wrong, so confidence stops separating right from wrong. Gatekeeper keeps cross-entropy on the
samples the head already classifies correctly and pulls the mistakes towards the uniform
distribution (KL(p ‖ U) = log K − H(p)), so low confidence comes to mean "likely wrong" and the
failure gate has a cleaner signal to work with. Kept in its own module so importing the gate
does not import torch.

Example:
    >>> import torch
    >>> from curation.stage1.gatekeeper import gatekeeper_loss
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> round(float(gatekeeper_loss(logits, torch.tensor([0, 0]), weight=0.5)), 4)
    0.0595
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from curation.stage1.arrays import check_fraction


def gatekeeper_loss(logits: torch.Tensor, labels: torch.Tensor, *, weight: float = 0.5) -> torch.Tensor:
    """``weight`` · CE on correct samples + (1 − ``weight``) · KL(p ‖ uniform) on mistakes.

    Both sums are divided by the batch size (not by the number of correct / wrong samples), as in
    the paper, so a batch with few mistakes does not blow up their term.

    Args:
        logits: [n, k] class logits, or [n] single binary logits (read as [0, z]).
        labels: [n] integer class indices.
        weight: trade-off in [0, 1]; higher keeps more accuracy, lower gives better deferral.

    Returns:
        Scalar loss tensor (differentiable in ``logits``).
    """
    weight = check_fraction(weight, name="weight", closed="both")
    if logits.ndim == 1:
        logits = torch.stack([torch.zeros_like(logits), logits], dim=1)  # [n] -> [n, 2]
    n, k = logits.shape
    if n == 0:
        return logits.sum()  # an empty batch contributes nothing (and keeps the graph intact)
    log_p = F.log_softmax(logits, dim=1)  # [n, k]
    correct = (logits.argmax(dim=1) == labels).detach()  # [n]
    ce = F.nll_loss(log_p, labels, reduction="none")  # [n]
    kl_to_uniform = (log_p.exp() * log_p).sum(dim=1) + math.log(k)  # [n] = log k − H(p)
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    loss_correct = torch.where(correct, ce, zero).sum() / n
    loss_wrong = torch.where(correct, zero, kl_to_uniform).sum() / n
    return weight * loss_correct + (1.0 - weight) * loss_wrong
