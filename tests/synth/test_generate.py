"""The tiny SDXL pipeline end to end, into a real (temporary) FiftyOne dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from curation import store
from curation.synth.generate import (
    SYNTH_FIELDS,
    GenerationError,
    encode_png,
    hard_negative_stats,
    render,
    run_batched,
    synthesize,
)
from curation.synth.plan import SynthJob, plan_tasks
from curation.synth.prompts import load_prompt_bank

TINY_JOB = {"width": 64, "height": 64, "steps": 2, "batch_size": 2}
"""Job options that keep the tiny pipeline at a fraction of a second per image on a CPU."""


def job(**kw) -> SynthJob:
    return SynthJob(**{**TINY_JOB, **kw})



def test_text2img_writes_files_and_exact_fields(dataset, settings, real_pipes):
    report = synthesize(dataset, job(count=2, seed=5, categories={"ad": 2}), settings=settings, pipelines=real_pipes, progress=False)
    assert len(report.added) == 2 and report.split == "train" and report.skipped == {}
    bank = load_prompt_bank()
    expected_prompts = [bank.compose("hard_negative", category="ad", seed=5), bank.compose("hard_negative", category="ad", seed=6)]
    for sid, composed in zip(report.added, expected_prompts):
        s = dataset[sid]
        path = Path(s.filepath)
        assert path.is_file() and path.parent.parent == settings.media_root
        assert path.name == f"{s.content_hash}.png" and path.parent.name == s.content_hash[:2]
        assert s.metadata.width == 64 and s.metadata.height == 64
        got = {f: s[f] for f in (
            "sources", "split", "label_origin", "source_label", "generator", "generator_random_weights", "prompt",
            "negative_prompt", "steps", "strength", "guidance_scale", "synth_mode", "parent_id", "sequence_group",
            "hn_category", "daytime", "weather", "scene_environment",
        )}
        assert got == {
            "sources": ["synthetic"], "split": "train", "label_origin": "rule", "source_label": {"synthetic": "no_roadwork"},
            "generator": "sdxl-tiny-random", "generator_random_weights": False, "prompt": composed.prompt,
            "negative_prompt": composed.negative_prompt, "steps": 2, "strength": None, "guidance_scale": 5.0,
            "synth_mode": "text2img", "parent_id": None, "sequence_group": None, "hn_category": "ad",
            "daytime": composed.daytime, "weather": list(composed.weather), "scene_environment": composed.scene_environment,
        }
        assert s.ground_truth.label == "no_roadwork" and "synthetic" in s.slices
        assert s.tags == [] and len(s.phash) == 16
    assert [dataset[i].seed for i in report.added] == [5, 6]
    schema = dataset.get_field_schema()
    assert all(spec.name in schema for spec in SYNTH_FIELDS)


def test_synthetic_samples_get_the_slice_rules_the_dataset_was_imported_with(dataset, settings, real_pipes):
    """Under an import's rule orange_share ≥ 0 every synthetic hard negative is an orange_distractor;
    under orange_share ≥ 1 (every pixel orange) none of these noisy images is."""
    from curation import store
    from curation.slices import SliceConfig

    store.record_slice_config(dataset, SliceConfig(orange_share=0.0))
    first = synthesize(dataset, job(count=2, seed=11), settings=settings, pipelines=real_pipes, progress=False)
    store.record_slice_config(dataset, SliceConfig(orange_share=1.0))
    second = synthesize(dataset, job(count=2, seed=21), settings=settings, pipelines=real_pipes, progress=False)
    assert len(first.added) == len(second.added) == 2
    assert all("orange_distractor" in dataset[i].slices for i in first.added)
    assert not any("orange_distractor" in dataset[i].slices for i in second.added)


def test_same_seed_gives_identical_bytes_and_reruns_dedupe(dataset, settings, real_pipes):
    j = job(count=2, seed=42, kind="positive")
    tasks = plan_tasks(j, load_prompt_bank(), [], random_weights=False)
    first = [encode_png(im) for im in render(real_pipes, tasks, j)]
    second = [encode_png(im) for im in render(real_pipes, tasks, j)]
    assert first == second and first[0] != first[1]

    a = synthesize(dataset, j, settings=settings, pipelines=real_pipes, progress=False)
    assert [Path(dataset[i].filepath).read_bytes() for i in a.added] == first
    again = synthesize(dataset, j, settings=settings, pipelines=real_pipes, progress=False)
    assert again.added == [] and again.skipped == {"existing": 2}
    assert len(dataset) == 2


def test_img2img_children_of_train_parents(dataset, settings, real_pipes, parents):
    report = synthesize(dataset, job(mode="img2img", kind="caption", count=4), settings=settings, pipelines=real_pipes, progress=False)
    assert len(report.added) == 4
    train_parents = {parents["train_rw"], parents["train_neg"]}
    for sid in report.added:
        s = dataset[sid]
        parent = dataset[s.parent_id]
        assert s.parent_id in train_parents  # never the leaked, val, calib or test parents
        assert s.split == "train" and s.strength == 0.7 and s.synth_mode == "img2img"
        assert s.sequence_group == parent.sequence_group
        assert s.ground_truth.label == parent.ground_truth.label
        assert parent.scene_description in s.prompt


def test_inpaint_replace_removes_the_evidence(dataset, settings, real_pipes, parents):
    report = synthesize(
        dataset, job(mode="inpaint_replace", count=2, categories={"crane": 1, "vest": 1}),
        settings=settings, pipelines=real_pipes, progress=False,
    )
    children = [dataset[i] for i in report.added]
    assert [c.hn_category for c in children] == ["crane", "vest"]
    for c in children:
        assert c.parent_id == parents["train_rw"] and c.sequence_group == "v1/s1"
        assert c.ground_truth.label == "no_roadwork" and c.source_label == {"synthetic": "no_roadwork"}
        assert c.strength == 0.99 and c.synth_mode == "inpaint_replace" and c.primitives is None
        assert Path(c.filepath).is_file()


def test_inpaint_add_puts_roadwork_in_a_clean_scene(dataset, settings, real_pipes, parents):
    report = synthesize(dataset, job(mode="inpaint_add", count=2, seed=3), settings=settings, pipelines=real_pipes, progress=False)
    bank = load_prompt_bank()
    for sid in report.added:
        s = dataset[sid]
        assert s.parent_id == parents["train_neg"] and s.ground_truth.label == "roadwork"
        (det,) = s.primitives.detections  # the parent's boxes had nothing; the added object is boxed
        assert det.label in bank.roadwork_objects
        assert any(s.prompt.startswith(phrase) for phrase in bank.roadwork_objects[det.label])
        x, y, w, h = det.bounding_box
        assert 0 <= x and x + w <= 1 and 0 <= y and y + h <= 1 and s.strength == 0.99
        assert s.hn_category is None and s.split == "train"


def test_val_synthetic_children_come_from_val_and_calib_only(dataset, settings, real_pipes, parents):
    report = synthesize(
        dataset, job(mode="img2img", purpose="val_synthetic", count=4), settings=settings, pipelines=real_pipes, progress=False
    )
    children = [dataset[i] for i in report.added]
    assert {c.parent_id for c in children} == {parents["val_rw"], parents["calib_neg"]}
    assert {c.split for c in children} == {"val_synthetic"}
    assert len(store.training_view(dataset).exists("generator")) == 0
    # text-to-image from the parents' captions, validator style
    t2i = synthesize(
        dataset, job(mode="text2img", purpose="val_synthetic", count=2, seed=9), settings=settings, pipelines=real_pipes, progress=False
    )
    for sid in t2i.added:
        s = dataset[sid]
        assert s.split == "val_synthetic" and s.parent_id in {parents["val_rw"], parents["calib_neg"]}
        assert s.ground_truth.label == dataset[s.parent_id].ground_truth.label


def test_random_weight_images_are_never_admitted_to_training(dataset, settings, tiny_pipes, parents):
    assert tiny_pipes.random_weights
    report = synthesize(dataset, job(mode="img2img", kind="caption", count=2), settings=settings, pipelines=tiny_pipes, progress=False)
    assert report.split is None and report.random_weights
    for sid in report.added:
        s = dataset[sid]
        assert s.split is None and s.tags == ["not_admitted"] and s.generator_random_weights is True
    from fiftyone import ViewField as F

    assert len(dataset.match(F("split") == "train").exists("generator")) == 0
    assert len(store.training_view(dataset)) == 2  # the real train parents, less the leaked one
    # even if a later job wrongly sets split train, the training view still drops them
    dataset.select(report.added).set_values("split", ["train"] * len(report.added))
    assert len(store.training_view(dataset)) == 2


def test_run_batched_halves_on_out_of_memory():
    calls = []

    def fn(chunk):
        calls.append(len(chunk))
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [x * 10 for x in chunk]

    sizes = []
    out = list(run_batched(list(range(7)), 4, fn, on_oom=sizes.append))
    assert calls == [4, 2, 2, 2, 1] and sizes == [2]
    assert [r for _, res in out for r in res] == [x * 10 for x in range(7)]

    def always(chunk):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(GenerationError, match="Out of memory at batch size 1"):
        list(run_batched([1, 2], 2, always))


class _Flaky:
    """Wraps a pipeline; the n-th call raises ``error``."""

    def __init__(self, pipe, error, at_call=1):
        self.pipe, self.error, self.at, self.calls = pipe, error, at_call, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return self.pipe(*args, **kwargs)


def test_out_of_memory_falls_back_end_to_end(dataset, settings, real_pipes):
    flaky = real_pipes.with_random_weights(False)
    flaky.text2img = _Flaky(real_pipes.text2img, torch.OutOfMemoryError("simulated"))
    report = synthesize(dataset, job(count=3, batch_size=2), settings=settings, pipelines=flaky, progress=False)
    assert report.final_batch_size == 1 and len(report.added) == 3


def test_a_failed_run_leaves_no_samples_and_reruns_cleanly(dataset, settings, real_pipes):
    broken = real_pipes.with_random_weights(False)
    broken.text2img = _Flaky(real_pipes.text2img, RuntimeError("killed mid-run"), at_call=2)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        synthesize(dataset, job(count=4, batch_size=2), settings=settings, pipelines=broken, progress=False)
    assert len(dataset) == 0  # the first batch's images exist on disk, but no sample was added
    written = sorted(settings.media_root.rglob("*.png"))
    assert len(written) == 2
    report = synthesize(dataset, job(count=4, batch_size=2), settings=settings, pipelines=real_pipes, progress=False)
    assert len(report.added) == 4 and len(dataset) == 4
    assert set(written) <= {Path(p) for p in dataset.values("filepath")}


def test_scorer_rejects_confident_training_images_but_not_evaluation_ones(dataset, settings, real_pipes, parents):
    def scorer(images):
        return [0.0] * len(images)  # Stage-1 says "no roadwork" with full confidence

    hard = synthesize(dataset, job(count=2), settings=settings, pipelines=real_pipes, scorer=scorer, progress=False)
    assert hard.added == [] and hard.skipped == {"confident": 2}
    pos = synthesize(dataset, job(count=2, kind="positive"), settings=settings, pipelines=real_pipes, scorer=scorer, progress=False)
    assert len(pos.added) == 2  # Stage-1 gets these wrong: exactly what training needs
    val = synthesize(
        dataset, job(mode="img2img", purpose="val_synthetic", count=2), settings=settings, pipelines=real_pipes,
        scorer=scorer, progress=False,
    )
    assert len(val.added) == 2


def test_near_duplicates_of_existing_images_are_skipped(dataset, settings, real_pipes):
    import fiftyone as fo

    j = job(count=1, seed=77)
    tasks = plan_tasks(j, load_prompt_bank(), [], random_weights=False)
    from curation.media import MediaLimits, decode_image

    d = decode_image(encode_png(render(real_pipes, tasks, j)[0]), name="x", limits=MediaLimits(min_side=8))
    # an existing image with the same perceptual hash but other bytes (e.g. a re-encode)
    dataset.add_sample(fo.Sample(filepath="/tmp/other.jpg", content_hash="0" * 64, phash=d.phash, split="val"))
    report = synthesize(dataset, j, settings=settings, pipelines=real_pipes, progress=False)
    assert report.added == [] and report.skipped == {"near_duplicate": 1}


def test_hard_negative_stats_feed_targeting(dataset):
    import fiftyone as fo

    from curation.synth.targeting import allocate_budget

    rows = [("crane", "roadwork")] * 6 + [("crane", "no_roadwork")] * 2 + [("ad", "no_roadwork")] * 8
    dataset.add_samples([
        fo.Sample(
            filepath=f"/tmp/hn{i}.jpg", tags=["hard_negative"], hn_category=cat, sources=["natix"],
            ground_truth=fo.Classification(label="no_roadwork"), stage1=fo.Classification(label=pred),
        )
        for i, (cat, pred) in enumerate(rows)
    ] + [fo.Sample(filepath="/tmp/syn.jpg", tags=["hard_negative"], hn_category="ad", sources=["synthetic"],
                   ground_truth=fo.Classification(label="no_roadwork"), stage1=fo.Classification(label="roadwork"))])
    stats = {s.category: (s.mined, s.errors) for s in hard_negative_stats(dataset)}
    assert stats == {"ad": (8, 0), "crane": (8, 6)}  # the synthetic hard negative is not "mined"
    out = allocate_budget(hard_negative_stats(dataset), 10, categories=load_prompt_bank().categories, exploration=0.0)
    assert out["crane"] >= 8 and out["crane"] > out["ad"]  # ad's 0/8 is shrunk towards the overall rate, not to 0
