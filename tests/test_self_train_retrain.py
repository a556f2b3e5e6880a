"""Self-training in the retrain pipeline: what may be unlabeled, the verifiable reward, pseudo-labels in their own field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curation import schema, store
from curation.demo.corpus import CorpusSpec, write_corpus
from curation.errors import ConfigError
from curation.label.human_labels import set_human_label
from curation.retrain.job import RetrainConfig, run_retrain
from curation.retrain.self_train import pool_rewards, run_self_training, unlabeled_pool
from curation.stage1.promotion import PromotionRule
from curation.stage1.self_train import NO_FILTER, SelfTrainConfig
from curation.stage1.train import TrainConfig


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, CorpusSpec(n_natix_train=80, natix_train_positive=0.5, n_natix_test=4, n_roadwork=4, n_roboflow=2, n_queries=24, seed=5))
    return root


def test_mode_is_checked():
    with pytest.raises(ConfigError):
        RetrainConfig(mode="semi")


def test_unlabeled_stream_is_pool_only_never_human_labeled_or_leak_tagged(loaded):
    pool = loaded.match({"split": schema.Split.POOL})
    assert pool.count() >= 10 and loaded.match({"split": {"$in": ["val", "calib", "test"]}}).count() > 0
    ids = pool.values("id")
    for tag, sample_id in zip((schema.TAG_LEAK, schema.TAG_LEAK_EMBEDDING, schema.TAG_LEAK_UNCHECKED, schema.TAG_LABEL_CONFLICT), ids):
        loaded.select(sample_id).tag_samples(tag)
    set_human_label(loaded.select(ids[4]), label=schema.Label.NO_ROADWORK, user="ana", reason="test", action="label")
    stream = unlabeled_pool(loaded)
    assert set(stream.distinct("split")) == {schema.Split.POOL}
    assert not set(stream.values("id")) & set(ids[:5])  # four tagged, one human-labeled
    assert stream.count() == pool.count() - 5


def test_later_human_labels_are_the_verifiable_reward_and_can_refuse_self_training(loaded, tmp_path):
    import fiftyone as fo

    ids = loaded.match({"split": schema.Split.POOL}).values("id")[:3]
    store.set_values_by_id(loaded, "pseudo_label", {i: fo.Classification(label="roadwork", confidence=0.97) for i in ids})
    set_human_label(loaded.select(ids[:1]), label=schema.Label.ROADWORK, user="ana", reason="confirm", action="label")
    set_human_label(loaded.select(ids[1:3]), label=schema.Label.NO_ROADWORK, user="ana", reason="reject", action="label")
    rewards = pool_rewards(loaded)
    assert sorted(rewards.tolist()) == [-1, -1, 1]
    record = run_self_training(loaded, None, None, np.zeros(0), SelfTrainConfig(min_verified=3, min_precision=0.9), cache=None,
                               version="0.1.0", seed=0, out_dir=tmp_path)
    assert "refused" in record["skipped"] and "0.333" in record["skipped"]
    assert json.loads((tmp_path / "self_train.json").read_text())["verified_reward"] == {"n": 3, "sum": -1, "note": record["verified_reward"]["note"]}


def test_self_train_retrain_writes_pseudo_labels_beside_ground_truth_and_promotes_by_rule(settings, loaded):
    before = dict(zip(*loaded.values(["id", "ground_truth.label"])))
    config = RetrainConfig(
        head_train=TrainConfig(mode="head", epochs=4, batch_size=64, augmentations=1, lr=5e-3),
        promotion=PromotionRule(bootstrap=200, min_slice_n=5), export=False, mode="self_train",
        # random tiny backbone: accept every teacher prediction so the plumbing is exercised (not evidence of anything)
        self_train=SelfTrainConfig(entropy_threshold=NO_FILTER, max_class_share=1.0, max_rounds=2, passes_per_round=1, group_size=16),
    )
    result = run_retrain(settings, config)
    record = json.loads((result.run_dir / "checkpoints" / "self_train.json").read_text())
    assert "skipped" not in record, record["skipped"]
    assert record["unlabeled"] == unlabeled_pool(loaded).count() and 1 <= len(record["rounds"]) <= 2
    assert record["best_guard_mcc"] >= record["start_guard_mcc"]
    written = loaded.exists("pseudo_label")
    assert written.count() == record["pseudo_labels_written"] > 0
    assert set(written.distinct("split")) == {schema.Split.POOL}
    assert set(written.distinct("pseudo_label_teacher")) == {f"{result.version}/ema-teacher"}
    assert dict(zip(*loaded.values(["id", "ground_truth.label"]))) == before  # pseudo-labels never touch ground_truth
    assert result.promoted and any("champion" in r.lower() or "mcc" in r.lower() for r in result.reasons)  # no champion yet: the rule's own reasons
