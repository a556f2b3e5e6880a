"""Validator queries of a view, scored by one model: what calibration, the promotion rule and the
per-contract evaluation read.

Queries are seeded per image content, so two models (or two runs) see identical queries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation import schema
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.query_policies import contract_query


@dataclass(frozen=True, eq=False)
class QueryScores:
    """One model's answers on a fixed set of validator queries."""

    ids: list[str]
    y: np.ndarray  # [n] 0/1 truth
    logits: np.ndarray  # [n] raw image logits (before temperature)
    view_logits: np.ndarray  # [n, V] raw view logits (before temperature)
    p: np.ndarray  # [n] calibrated probabilities
    features: np.ndarray  # [n, F] gate features
    feature_names: list[str]
    slices: list[list[str]]
    groups: list[str | None]

    def recalibrated(self, config: Stage1Config) -> QueryScores:
        """The same answers under ``config``'s temperature and threshold, without a new forward."""
        from curation.stage1.features import feature_names, gate_features

        t = config.temperature
        p = 1.0 / (1.0 + np.exp(-self.logits / t))
        view_probs = 1.0 / (1.0 + np.exp(-self.view_logits / t))
        table = gate_features(view_probs, p, threshold=config.threshold, top_k=config.top_k, flip=config.views.flip)
        order = [feature_names(config.views.flip).index(name) for name in self.feature_names]
        return dataclasses.replace(self, p=p, features=table[:, order])


def score_queries(
    model: Stage1Model, view: Any, *, seed: int, batch_size: int = 32, query_policy: str | None = None
) -> QueryScores:
    """Predict the validator query of every sample (seeded per image content: identical across models and databases).

    ``query_policy``: the contract the queries follow (:func:`contract_query`); None: the
    platform's own model of the 2025-11 contract.
    """
    from curation.media import open_rgb
    from curation.stage1.validator_view import query_key, validator_seed

    ids, paths, labels, slices, groups, hashes = view.values(
        ["id", "filepath", "ground_truth.label", "slices", "sequence_group", "content_hash"]
    )
    preds = []
    for start in range(0, len(ids), batch_size):
        chunk = range(start, min(start + batch_size, len(ids)))
        images = [contract_query(open_rgb(paths[i]), validator_seed(query_key(ids[i], hashes[i]), seed), query_policy) for i in chunk]
        preds.extend(model.predict(images))
    names = sorted(preds[0].gate_features) if preds else []
    p = np.array([q.p_roadwork for q in preds])
    return QueryScores(
        ids=list(ids),
        y=np.array([label == schema.Label.ROADWORK for label in labels], dtype=np.int64),
        logits=np.array([q.logits[1] - q.logits[0] for q in preds]) * model.config.temperature,
        view_logits=np.array([q.view_logits for q in preds]).reshape(len(preds), -1),
        p=p,
        features=np.array([[q.gate_features[n] for n in names] for q in preds]).reshape(len(preds), len(names)),
        feature_names=names,
        slices=[s or [] for s in slices],
        groups=list(groups),
    )
