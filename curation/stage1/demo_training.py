"""The demo's Stage-1 training recipe: a small DINOv3 trained from scratch on demo queries.

No pretrained weights exist offline, so the demo trains the whole ``tiny-demo`` backbone (patch 8,
hidden 64, 2 blocks) with its head, through the platform's own :func:`~curation.stage1.train.train_finetune`.
``make demo``, the retrain pipeline and the tests use this one recipe; it is expressible as a
backbone preset plus a :class:`~curation.stage1.train.TrainConfig`, so a pipeline YAML can repeat it:

    backbone: tiny-demo
    views: {grid: 0, size: 64}
    aggregator: max
    train: {mode: partial, last_n_blocks: 2, train_embeddings: true, epochs: 8, batch_size: 32,
            lr: 0.002, backbone_lr: 0.002, layer_decay: 1.0, weight_decay: 0.05, warmup_steps: 10,
            augmentations: 1, validator_level: 0}

Measured through ``train_finetune`` on this shared 2-core CPU (held-out demo queries are independent
scenes, disjoint from training; AUROC at validator level 0 / with levels drawn like validators):

- 1,500 training queries, 8 epochs: 0.782 / 0.670 on 400 held-out (0.796 / 0.682 on 200); ~190 s.
- 900 training queries, 6 epochs: 0.671 / 0.633 (0.710 / 0.654 on 200); ~156 s.
- 1,050 training queries, 8 epochs (the CI test, tests/stage1/test_train.py): 0.784 / 0.689 on 200
  held-out; the test takes ~135 s.
- 240 training queries, 8 epochs: 0.554 with drawn levels.

So the issue's floor (0.7 on ≥ 200 held-out images) is met at level 0 (the held-out image itself);
with levels drawn like validators it is just under (0.689). For comparison ``tiny-random`` fine-tuned
the same way stays at ≈ 0.55-0.60. Training on level 0 (a demo query is already 224×224, so level 0
is the JPEG round trip only) avoids random crops that cut the evidence out of a positive.

Example:
    >>> from curation.stage1.demo_training import demo_model, demo_train_config
    >>> demo_model().config.backbone, demo_train_config().validator_level
    ('tiny-demo', 0)
"""

from __future__ import annotations

from collections.abc import Sequence

from curation.stage1.backbone import TINY_DEMO, random_backbone, tiny_demo_preset
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.train import TrainConfig, TrainResult, train_finetune
from curation.stage1.views import ViewPolicy

DEMO_VIEWS = ViewPolicy(grid=0, size=64)
PRETRAINED_DEMO_BACKBONE = "efficientnet-lite0"
PRETRAINED_DEMO_VIEWS = ViewPolicy(grid=0, size=224)


def pretrained_demo_recipe() -> tuple[Stage1Config, TrainConfig, TrainConfig]:
    """What ``make demo`` trains: the ImageNet Lite0 with its top 3 blocks fine-tuned, then a head.

    Returns (model config, fine-tuning job, head job). The demo corpus's images are validator-sized
    already, so the global view at 224 is the validator's own resolution. Measured on the demo's
    calib in the validator view (225 images): frozen Lite0 + linear head, AUROC 0.65-0.68 and MCC
    0.24; the top 3 blocks fine-tuned for 3 epochs on validator queries (a new seeded query per
    epoch, levels drawn like the validators), AUROC 0.85 and MCC 0.51 at val's threshold, in 114 s
    on 2 cores. The head is then retrained on 2 cached queries per image of the tuned backbone.
    """
    stage1 = Stage1Config(backbone=PRETRAINED_DEMO_BACKBONE, views=PRETRAINED_DEMO_VIEWS, aggregator="max")
    finetune = TrainConfig(
        mode="partial", last_n_blocks=3, epochs=3, batch_size=32, lr=3e-3, backbone_lr=1e-3, layer_decay=0.8,
        weight_decay=1e-4, augmentations=3, class_weights="balanced", warmup_steps=10,
    )
    head = TrainConfig(mode="head", epochs=60, batch_size=256, lr=3e-3, weight_decay=1e-4, augmentations=2, class_weights="balanced")
    return stage1, finetune, head


def demo_stage1_config() -> Stage1Config:
    """The demo model's config: ``tiny-demo`` backbone, the global view only at 64 px."""
    return Stage1Config(backbone=TINY_DEMO, views=DEMO_VIEWS, aggregator="max")


def demo_train_config(*, seed: int = 0, epochs: int = 8) -> TrainConfig:
    """Full fine-tune of backbone + head from scratch (every block and the patch embedding)."""
    return TrainConfig(
        mode="partial",
        last_n_blocks=2,
        train_embeddings=True,
        epochs=epochs,
        batch_size=32,
        lr=2e-3,
        backbone_lr=2e-3,
        layer_decay=1.0,
        weight_decay=0.05,
        warmup_steps=10,
        augmentations=1,
        validator_level=0,
        seed=seed,
    )


def demo_model(*, seed: int = 0) -> Stage1Model:
    """A fresh, untrained demo model (random ``tiny-demo`` backbone and head)."""
    backbone = random_backbone(tiny_demo_preset(), seed=seed)
    return Stage1Model.build(demo_stage1_config(), backbone=backbone, seed=seed)


def train_demo_model(
    images: Sequence,
    labels: Sequence[int],
    hashes: Sequence[str],
    *,
    seed: int = 0,
    epochs: int = 8,
    version: str = "0.1.0",
) -> tuple[Stage1Model, TrainResult]:
    """Build and train the demo model on labelled demo images; the model is marked trained.

    Args:
        images: PIL images or paths (demo queries or frames; each becomes a level-0 validator query).
        labels: [N] 0/1 (``truth.csv`` ``is_roadwork``).
        hashes: [N] content hashes (seed the queries; the version records the data).
        seed: fixes the backbone and head initialisation, the batch order and the queries.
        epochs: passes over the data.

    Returns:
        (the trained :class:`Stage1Model`, the :class:`TrainResult`). Save it with
        ``model.save(folder, include_backbone=True)``: the backbone is trained too.
    """
    model = demo_model(seed=seed)
    result = train_finetune(
        list(images), list(labels), demo_train_config(seed=seed, epochs=epochs), model=model,
        content_hashes=list(hashes), version=version,
    )
    return model, result
