from __future__ import annotations

import fiftyone as fo
import fiftyone.brain as fob
import numpy as np
import pytest
from PIL import Image

from curation.predict.fo_model import Stage1FiftyOneModel
from curation.predict.job import predict_collection
from curation.stage1.backbone import tiny_random_backbone
from curation.stage1.model import Stage1Config, Stage1Model


def test_apply_model_and_embeddings_agree_with_platform_path(dataset, tmp_path):
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    dataset.add_samples([fo.Sample(filepath=str(tmp_path / f"{i}.png")) for i in range(4)])
    model = Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0))

    predict_collection(dataset, model, progress=False)
    dataset.apply_model(Stage1FiftyOneModel(model), "stage1_apply", batch_size=2)
    assert dataset.values("stage1_apply.p_roadwork") == pytest.approx(dataset.values("stage1.p_roadwork"), abs=1e-5)
    assert dataset.values("stage1_apply.label") == dataset.values("stage1.label")

    dataset.compute_embeddings(Stage1FiftyOneModel(model), embeddings_field="emb", batch_size=2)
    emb = np.array(dataset.values("emb"))
    assert emb.shape == (4, model.hidden_size)
    assert np.allclose(emb, np.array(dataset.values("stage1_embedding")), atol=1e-5)

    # Brain works offline when given the embeddings field.
    fob.compute_similarity(dataset, embeddings="emb", brain_key="stage1_sim", backend="sklearn")
    first = dataset.first().id
    assert dataset.sort_by_similarity(first, k=1, brain_key="stage1_sim").first().id == first
