"""The FiftyOne side of self-training (retrain ``mode: self_train``): what is unlabeled, the reward, the writes.

The math lives in :mod:`curation.stage1.self_train`; this module decides which samples may serve as
the unlabeled stream (pool only, never a human-labeled, leak-tagged, conflicting, not-admitted or
random-weight synthetic sample, and never val/calib/test), scores the round guard on val's
validator-view queries (promotion judges on calib, so the guard must not pick rounds there), turns later human labels on pool samples into the ±1 verifiable reward, and writes the
final teacher's accepted pseudo-labels to ``pseudo_label`` (never ``ground_truth``) with the
teacher's version in ``pseudo_label_teacher``, so the App can browse them and a labeler can confirm
one through the ordinary labeling path (which makes it a human label and takes it out of the stream).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curation import schema, store
from curation.errors import InputError
from curation.stage1.calibrate import threshold_for_max_mcc
from curation.stage1.self_train import SelfTrainConfig, head_probs, reward_allows, self_train, verified_rewards

EXCLUDED_TAGS = (schema.TAG_LEAK, schema.TAG_LEAK_UNCHECKED, schema.TAG_LEAK_EMBEDDING, schema.TAG_LABEL_CONFLICT, schema.TAG_NOT_ADMITTED)


def teacher_version(version: str) -> str:
    return f"{version}/ema-teacher"


def unlabeled_pool(collection: Any) -> Any:
    """Pool samples no human has labeled, without any tag that keeps a sample out of training."""
    from fiftyone import ViewField as F

    return (
        collection.match((F("split") == schema.Split.POOL) & (F("label_origin") != schema.LABEL_ORIGIN_HUMAN))
        .match_tags(list(EXCLUDED_TAGS), bool=False)
        .match(F("generator_random_weights") != True)
    )


def pool_rewards(collection: Any) -> np.ndarray:
    """±1 per pool sample whose stored pseudo-label a human label has since confirmed (+1) or contradicted (−1)."""
    from fiftyone import ViewField as F

    judged = collection.match((F("split") == schema.Split.POOL) & (F("label_origin") == schema.LABEL_ORIGIN_HUMAN)).exists("pseudo_label")
    pseudo, human = judged.values(["pseudo_label.label", "ground_truth.label"])
    to_int = lambda labels: np.array([-1 if v is None else int(v == schema.Label.ROADWORK) for v in labels], dtype=np.int64)
    return verified_rewards(to_int(pseudo), to_int(human)) if pseudo else np.zeros(0, dtype=np.int64)


def _features(view: Any, model: Any, cache: Any, *, seed: int, engine: Any = None) -> tuple[list[str], torch.Tensor]:
    from curation.stage1.cache import cache_features

    ids, paths, hashes = view.values(["id", "filepath", "content_hash"])
    if not ids:
        return [], torch.empty(0)
    return ids, cache_features(paths, hashes, model, cache, augmentations=1, seed=seed, engine=engine).features[:, 0]  # [N, V, 2D]


def run_self_training(
    dataset: Any,
    model: Any,
    labeled: torch.Tensor,
    labels: np.ndarray,
    config: SelfTrainConfig,
    *,
    cache: Any,
    version: str,
    seed: int,
    out_dir: Path,
    engine: Any = None,
) -> dict[str, Any]:
    """Self-train ``model``'s (already supervised) head on the unlabeled pool, guarded on val; write pseudo-labels.

    Args:
        labeled: the training view's cached features [N, M, V, 2D] (every augmentation is a labeled sample).
        labels: [N] 0/1.
        engine: computes missing pool and val features (the retrain's feature engine; None: this process).
    Returns the run record (also written to ``out_dir/self_train.json``).
    """
    from fiftyone import ViewField as F

    rewards = pool_rewards(dataset)
    allowed, why = reward_allows(rewards, min_verified=config.min_verified, min_precision=config.min_precision)
    record: dict[str, Any] = {"config": dataclasses.asdict(config), "verified_reward": {"n": int((rewards != 0).sum()), "sum": int(rewards.sum()), "note": why}}
    if not allowed:
        record["skipped"] = f"self-training refused: {why}; the challenger is the supervised head"
        return _save(record, out_dir)
    pool = unlabeled_pool(dataset)
    ids, unlabeled = _features(pool, model, cache, seed=seed, engine=engine)
    splits = set(dataset.select(ids).distinct("split")) if ids else set()
    if splits - {schema.Split.POOL}:
        raise InputError(f"Unlabeled stream holds {sorted(splits - {schema.Split.POOL})} samples; only pool may be unlabeled.")
    # The guard picks a round on val: promotion compares challenger and champion on calib, and a
    # round chosen on calib would flatter the challenger there (best of several noisy scores).
    guard = dataset.match_tags(schema.TAG_LABEL_CONFLICT, bool=False).exists("ground_truth").match(F("split") == schema.Split.VAL)
    _, guard_feats = _features(guard, model, cache, seed=seed, engine=engine)
    y_guard = np.array([v == schema.Label.ROADWORK for v in guard.values("ground_truth.label")], dtype=np.int64)
    if len(ids) == 0 or len(y_guard) == 0 or y_guard.min() == y_guard.max():
        record["skipped"] = f"nothing to self-train on: {len(ids)} unlabeled pool samples, val labels {np.bincount(y_guard, minlength=2).tolist()}"
        return _save(record, out_dir)

    from curation.stage1.self_train import _Head

    def guard_score(m: Any) -> float:
        return float(threshold_for_max_mcc(y_guard, head_probs(_Head(m), guard_feats).numpy()).mcc)

    flat = labeled.reshape(-1, *labeled.shape[-2:])
    y = torch.as_tensor(np.asarray(labels)).long().repeat_interleave(labeled.shape[1] if labeled.dim() == 4 else 1)
    result = self_train(model, flat, y, unlabeled, config, guard_score=guard_score)
    record |= {
        "unlabeled": len(ids),
        "guard_split": "val",
        "guard_n": len(y_guard),
        "start_guard_mcc": result.start_guard_mcc,
        "best_guard_mcc": result.best_guard_mcc,
        "best_round": result.best_round,
        "stopped": result.stopped,
        "rounds": [dataclasses.asdict(r) for r in result.rounds],
    }
    if result.pseudo is not None:
        record["pseudo_labels_written"] = write_pseudo_labels(dataset, ids, result.pseudo, teacher=teacher_version(version))
    return _save(record, out_dir)


def write_pseudo_labels(dataset: Any, ids: list[str], pseudo: Any, *, teacher: str) -> int:
    """Accepted pseudo-labels to ``pseudo_label`` (+ teacher version); the rest of the stream is cleared."""
    import fiftyone as fo

    labels, teachers = {}, {}
    for i, sample_id in enumerate(ids):
        if bool(pseudo.keep[i]):
            name = schema.Label.ROADWORK if int(pseudo.label[i]) == 1 else schema.Label.NO_ROADWORK
            labels[sample_id] = fo.Classification(label=str(name), confidence=float(pseudo.confidence[i]), entropy=float(pseudo.entropy[i]))
            teachers[sample_id] = teacher
        else:
            labels[sample_id], teachers[sample_id] = None, None
    store.set_values_by_id(dataset, "pseudo_label", labels)
    store.set_values_by_id(dataset, "pseudo_label_teacher", teachers)
    return sum(v is not None for v in labels.values())


def _save(record: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    from curation.store import registry

    out_dir.mkdir(parents=True, exist_ok=True)
    registry.write_json_atomic(out_dir / "self_train.json", registry.jsonable(record))
    return record
