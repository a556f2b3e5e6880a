"""The demo's scripted labeler: answers from truth.csv through the labeling functions, idempotently."""

from __future__ import annotations

import fiftyone as fo

from curation.demo.labeler import SCRIPTED_USER, ScriptedLabels, label_like_a_person


def test_scripted_labeler_answers_once_and_a_rerun_changes_nothing(dataset, tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text(
        "path,source,is_roadwork,kind,hn_category,text,sha256\n"
        "a.jpg,queries,0,orange_billboard,ad,,aaa\n"
        "b.jpg,queries,1,cones,,,bbb\n"
        "c.jpg,queries,0,plain,,,ccc\n"
    )
    dataset.add_samples([
        fo.Sample(filepath=f"/tmp/{h}.jpg", content_hash=h, ground_truth=fo.Classification(label=label))
        for h, label in (("aaa", "roadwork"), ("bbb", "no_roadwork"), ("ccc", "no_roadwork"), ("ddd", "roadwork"))
    ])
    assert label_like_a_person(dataset, truth) == ScriptedLabels(hard_negatives=1, roadwork=1, unchanged=1, unknown=1)
    by_hash = {s.content_hash: s for s in dataset}
    assert (by_hash["aaa"].ground_truth.label, by_hash["aaa"].hn_category) == ("no_roadwork", "ad")
    assert by_hash["bbb"].ground_truth.label == "roadwork"
    assert {e["who"] for s in by_hash.values() for e in (s.label_history or [])} == {SCRIPTED_USER}
    history = {h: len(s.label_history or []) for h, s in by_hash.items()}

    assert label_like_a_person(dataset, truth) == ScriptedLabels(hard_negatives=0, roadwork=0, unchanged=3, unknown=1)
    dataset.reload()
    assert {s.content_hash: len(s.label_history or []) for s in dataset} == history
