from __future__ import annotations

import fiftyone as fo
import numpy as np

from curation import schema, store
from curation.ingest.leaks import recheck_leaks_with_embeddings


def test_embedding_near_duplicates_of_eval_images_are_tagged_on_the_trainable_side(dataset):
    rng = np.random.default_rng(0)
    test_emb = rng.normal(size=16)
    rows = [
        ("test", test_emb),                                  # evaluation image
        ("train", test_emb + rng.normal(0, 1e-3, 16)),       # near copy: must be tagged
        ("pool", test_emb + rng.normal(0, 1e-3, 16)),        # near copy in the pool: tagged too
        ("train", rng.normal(size=16)),                      # unrelated
        ("val", rng.normal(size=16)),
    ]
    ids = dataset.add_samples([
        fo.Sample(filepath=f"/tmp/leak{i}.jpg", split=split, stage1_embedding=list(map(float, emb)))
        for i, (split, emb) in enumerate(rows)
    ])
    assert recheck_leaks_with_embeddings(dataset, threshold=0.05) == 2
    tagged = set(dataset.match_tags(schema.TAG_LEAK_EMBEDDING).values("id"))
    assert tagged == {ids[1], ids[2]}  # never the test image
    assert ids[1] not in store.training_view(dataset).values("id")
