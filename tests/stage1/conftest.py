"""Stage-1 fixtures: tiny random models on CPU, with few threads (the CI box is shared)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_backbone():
    from curation.stage1.backbone import tiny_random_backbone

    return tiny_random_backbone(seed=0)


def count_backbone_calls(backbone) -> list[int]:
    """Register a forward hook; the returned list grows by one per backbone forward."""
    calls: list[int] = []

    def hook(module, args, kwargs, output) -> None:
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        calls.append(int(pixels.shape[0]))

    backbone.register_forward_hook(hook, with_kwargs=True)
    return calls
