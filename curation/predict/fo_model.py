"""Stage-1 as a FiftyOne ``Model``, so ``apply_model`` and ``compute_embeddings`` work too.

The platform's own path (:func:`curation.predict.job.predict_collection`) is faster and writes
every Stage-1 field; this wrapper exists for FiftyOne's generic tools: Brain similarity,
uniqueness and leaky-split checks on Stage-1 embeddings, and ad-hoc ``apply_model`` runs.

Example:
    >>> model = Stage1FiftyOneModel(stage1_model)  # doctest: +SKIP
    >>> dataset.apply_model(model, "stage1_apply")  # doctest: +SKIP
    >>> dataset.compute_embeddings(model, embeddings_field="stage1_embedding")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import fiftyone as fo
import numpy as np
from fiftyone.core.models import EmbeddingsMixin, Model
from PIL import Image

from curation.stage1.model import Stage1Model


class Stage1FiftyOneModel(Model, EmbeddingsMixin):
    """Adapter: uint8 HWC arrays in, ``fo.Classification`` (with logits) or embeddings out."""

    def __init__(self, model: Stage1Model):
        self.model = model

    @property
    def media_type(self) -> str:
        return "image"

    @property
    def has_logits(self) -> bool:
        return True

    @property
    def has_embeddings(self) -> bool:
        return True

    @property
    def ragged_batches(self) -> bool:
        return True  # images keep their own size; views are built per image

    @property
    def transforms(self) -> None:
        return None

    @property
    def preprocess(self) -> bool:
        return False

    @preprocess.setter
    def preprocess(self, value: bool) -> None:
        pass

    def _predict(self, args: list[Any]) -> list[Any]:
        return self.model.predict([Image.fromarray(np.asarray(a, dtype=np.uint8)).convert("RGB") for a in args])

    def predict(self, arg: Any) -> fo.Classification:
        return self.predict_all([arg])[0]

    def predict_all(self, args: list[Any]) -> list[fo.Classification]:
        return [
            fo.Classification(
                label=p.label, confidence=p.confidence, logits=list(p.logits), p_roadwork=p.p_roadwork, threshold=p.threshold
            )
            for p in self._predict(args)
        ]

    def embed(self, arg: Any) -> np.ndarray:
        return self.embed_all([arg])[0]

    def embed_all(self, args: list[Any]) -> np.ndarray:
        return np.stack([p.embedding for p in self._predict(args)])
