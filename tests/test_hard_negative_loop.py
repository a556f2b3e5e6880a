"""Issue 10's proof: hard negatives found and labeled through the platform lower the false-positive
rate on orange look-alikes.

The world (all demo corpora, different seeds, so no image is shared):

- a ``tiny-demo`` backbone trained once on 500 validator-mix queries, then frozen: it stands in for
  the pretrained DINOv3 (whose features already tell an orange billboard from a cone);
- the champion's training set: 300 queries of roadwork and PLAIN streets only, the data a miner
  starts with before anyone has labeled an orange look-alike;
- the pool: 600 dashcam-like queries (15% roadwork, 30% of the negatives orange look-alikes),
  ingested into a real FiftyOne dataset as the miner's query log (split ``pool``, unlabeled);
- val (thresholds) and eval (the FPR): validator-mix queries; eval's ``orange_distractor`` slice is
  the platform's rule (negative with orange_share ≥ 0.04 on the ingest thumbnail).

Per seed: the champion head (seeded, on a seeded 85% of the base set) predicts the pool through
``predict_collection``; the labeler works the platform's orange queue (``orange_candidates``, top 60)
with the scripted labeler (answers from the hidden truth, marked as scripted); the challenger head
trains on the base subset plus ``store.training_view`` of that dataset (the labeled pool samples).
Both are thresholded at max-MCC on val, as calibration does. Pre-declared: in at least 4 of 5 seeds
the challenger's FPR on eval's orange_distractor slice is lower by at least 0.05.

``CURATION_TEST_HNLOOP_BACKBONE`` picks the frozen backbone: unset (CI) or ``tiny-demo`` is the one
above; a preset name such as ``efficientnet-lite0`` (real ImageNet weights, issue 17) replaces it,
loaded as is (not trained here), global view at 224 px. That run embeds the corpora and predicts
the pool with the bigger network, a few minutes on 2 cores, so CI keeps the default.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from curation import store
from curation.demo.corpus import CorpusSpec, write_corpus
from curation.demo.labeler import SCRIPTED_USER, label_like_a_person
from curation.ingest.job import ingest_corpus
from curation.slices import SliceConfig, SliceInputs, compute_slices, orange_share
from curation.label import human_labels
from curation.predict.job import predict_collection
from curation.schema import Label
from curation.settings import Settings
from curation.stage1.cache import CacheSpec, FeatureCache, cache_features
from curation.stage1.calibrate import threshold_for_max_mcc
from curation.stage1.demo_training import demo_stage1_config, train_demo_model
from curation.stage1.metrics import mcc
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.train import TrainConfig, train_head
from curation.stage1.views import ViewPolicy
from curation.media import thumbnail

SEEDS = 5
MARGIN = 0.05
QUEUE = 60
BACKBONE = os.environ.get("CURATION_TEST_HNLOOP_BACKBONE", "tiny-demo")


def _queries(root: Path, n: int, seed: int, **mix: float) -> pd.DataFrame:
    spec = CorpusSpec(n_natix_train=0, n_natix_test=0, n_roadwork=0, n_roboflow=0, n_queries=n, seed=seed, **mix)
    write_corpus(root, spec)
    truth = pd.read_csv(root / "truth.csv", keep_default_na=False)
    truth["file"] = [str(root / p) for p in truth["path"]]
    return truth


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("hard_negative_loop")
    corpora = {
        "backbone": _queries(tmp / "backbone", 1000, 31),
        "base": _queries(tmp / "base", 400, 32, query_look_alike=0.1),
        "val": _queries(tmp / "val", 300, 33),
        "eval": _queries(tmp / "eval", 400, 34),
        "pool": _queries(tmp / "pool", 600, 35, query_positive=0.15, query_look_alike=0.3),
    }
    all_hashes = [set(t["sha256"]) for t in corpora.values()]
    assert sum(map(len, all_hashes)) == len(set().union(*all_hashes)), "corpora must not share an image"

    bb = corpora["backbone"]
    if BACKBONE == "tiny-demo":
        model, _ = train_demo_model(bb["file"].tolist(), bb["is_roadwork"].tolist(), bb["sha256"].tolist(), seed=0, epochs=8)
        head_config = demo_stage1_config()
    else:  # pretrained weights, used as loaded (the backbone corpus goes unused)
        model = Stage1Model.build(Stage1Config(backbone=BACKBONE, views=ViewPolicy(grid=0, size=224), aggregator="max"))
        head_config = model.config.replace(trained=False)
    backbone = model.backbone.eval().requires_grad_(False)
    cache = FeatureCache(tmp / "cache", CacheSpec.for_model(model, validator_level=0))
    rest = pd.concat([corpora[k] for k in ("base", "val", "eval", "pool")])
    feats = cache_features(rest["file"].tolist(), rest["sha256"].tolist(), model, cache, augmentations=1, seed=7).features[:, 0]
    by_hash = dict(zip(rest["sha256"], feats, strict=True))  # content hash -> [V, 2D]

    slice_config = SliceConfig()
    ev = corpora["eval"]
    ev["orange_distractor"] = [
        "orange_distractor" in compute_slices(
            SliceInputs(label=Label.ROADWORK if y else Label.NO_ROADWORK,
                        orange_share=orange_share(thumbnail(Image.open(f).convert("RGB")), slice_config)),
            slice_config,
        )
        for f, y in zip(ev["file"], ev["is_roadwork"], strict=True)
    ]

    settings = Settings.load(env={}).replace(
        dataset_name=f"t_hnloop_{uuid.uuid4().hex[:8]}", home=tmp / "home", user_name="tester", registry_dir=tmp / "registry"
    )
    dataset = store.open_dataset(settings)
    ingest_corpus(dataset, tmp / "pool", settings=settings, progress=False)
    yield {"corpora": corpora, "backbone": backbone, "head_config": head_config, "by_hash": by_hash, "dataset": dataset, "pool_truth": tmp / "pool" / "truth.csv"}
    dataset.delete()


def _head(world: dict, feats: torch.Tensor, labels: np.ndarray, seed: int) -> Stage1Model:
    model = Stage1Model.build(world["head_config"], backbone=world["backbone"], seed=seed)
    config = TrainConfig(mode="head", epochs=40, batch_size=32, lr=1e-2, weight_decay=0.01, class_weights="balanced", schedule="cosine", seed=seed)
    train_head(feats, torch.tensor(labels), config, model=model)
    return model


@torch.no_grad()
def _p(model: Stage1Model, feats: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(model.head_forward(feats.float())[1]).numpy().astype(np.float64)


def _stack(by_hash: dict, hashes) -> torch.Tensor:
    return torch.stack([by_hash[h] for h in hashes])


def _calibrated(model: Stage1Model, world: dict) -> float:
    val = world["corpora"]["val"]
    threshold = threshold_for_max_mcc(val["is_roadwork"].to_numpy(), _p(model, _stack(world["by_hash"], val["sha256"]))).threshold
    model.set_calibration(threshold=threshold, temperature=1.0)
    return threshold


def _fpr_and_mcc(model: Stage1Model, world: dict) -> tuple[float, float, int]:
    ev = world["corpora"]["eval"]
    said = _p(model, _stack(world["by_hash"], ev["sha256"])) >= model.config.threshold
    look = ev["orange_distractor"].to_numpy()
    return float(said[look].mean()), mcc(ev["is_roadwork"].to_numpy(), said.astype(int)), int(look.sum())


def test_mined_hard_negatives_lower_the_false_positive_rate_on_orange_look_alikes(world: dict) -> None:
    base, by_hash = world["corpora"]["base"], world["by_hash"]
    rows = []
    for seed in range(SEEDS):
        subset = base.iloc[np.random.default_rng(seed).permutation(len(base))[: int(0.85 * len(base))]]
        champion = _head(world, _stack(by_hash, subset["sha256"]), subset["is_roadwork"].to_numpy(), seed)
        _calibrated(champion, world)

        pool = world["dataset"].clone(f"{world['dataset'].name}_s{seed}")
        try:
            predict_collection(pool, champion, progress=False)
            queue = human_labels.orange_candidates(pool).limit(QUEUE)
            answered = label_like_a_person(queue, world["pool_truth"])
            trainable = store.training_view(pool)
            hashes, labels = trainable.values(["content_hash", "ground_truth.label"])
            assert set(trainable.distinct("label_history.who")) == {SCRIPTED_USER}  # only the queue's labels, marked as scripted
        finally:
            pool.delete()
        extra_y = np.array([int(label == Label.ROADWORK) for label in labels])
        challenger = _head(
            world,
            torch.cat([_stack(by_hash, subset["sha256"]), _stack(by_hash, hashes)]),
            np.concatenate([subset["is_roadwork"].to_numpy(), extra_y]),
            seed,
        )
        _calibrated(challenger, world)
        (fpr0, mcc0, n), (fpr1, mcc1, _) = _fpr_and_mcc(champion, world), _fpr_and_mcc(challenger, world)
        rows.append({"seed": seed, "hard_negatives": answered.hard_negatives, "new_roadwork": answered.roadwork,
                     "fpr_champion": fpr0, "fpr_challenger": fpr1, "mcc_champion": mcc0, "mcc_challenger": mcc1, "n_orange": n})

    table = pd.DataFrame(rows)
    print(f"\nbackbone: {BACKBONE}\n" + table.to_string(float_format=lambda v: f"{v:.3f}"))
    assert (table["n_orange"] >= 30).all(), "eval must hold enough orange look-alikes to measure an FPR"
    assert (table["hard_negatives"] >= QUEUE // 2).all(), "the orange queue should surface mostly look-alikes"
    wins = int((table["fpr_champion"] - table["fpr_challenger"] >= MARGIN).sum())
    assert wins >= 4, f"challenger lowered orange-distractor FPR by ≥ {MARGIN} in only {wins}/{SEEDS} seeds:\n{table}"
