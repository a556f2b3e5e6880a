from __future__ import annotations

import pytest

from curation.errors import ConfigError, InputError
from curation.synth.plan import (
    Parent,
    SynthJob,
    add_region,
    box_inside,
    eligible_parents,
    parent_problem,
    plan_tasks,
    replace_region,
)
from curation.synth.prompts import load_prompt_bank


@pytest.fixture(scope="module")
def bank():
    return load_prompt_bank()


def _parents() -> list[Parent]:
    cone = ("cone", (0.4, 0.5, 0.1, 0.2))
    road = ("road", (0.0, 0.6, 1.0, 0.4))
    return [
        Parent("a", "/a.png", "roadwork", "train", boxes=(cone, road), sequence_group="v1/s1"),
        Parent("b", "/b.png", "no_roadwork", "train", sequence_group="v1/s2"),
        Parent("c", "/c.png", "no_roadwork", "train", tags=("leak",)),
        Parent("d", "/d.png", "roadwork", "val"),
        Parent("e", "/e.png", "no_roadwork", "calib"),
        Parent("f", "/f.png", "no_roadwork", "test"),
        Parent("g", "/g.png", "no_roadwork", "pool"),
        Parent("h", "/h.png", "no_roadwork", "train", sources=("synthetic",)),
        Parent("i", "/i.png", "roadwork", "train", tags=("label_conflict",)),
        Parent("j", "/j.png", "roadwork", "train"),  # roadwork without boxes
    ]


def test_training_parents_come_from_train_only_and_never_leak():
    job = SynthJob(mode="img2img", kind="caption")
    assert [p.id for p in eligible_parents(_parents(), job)] == ["a", "b", "j"]
    problems = {p.id: parent_problem(p, job) for p in _parents()}
    assert problems["c"] == "leak" and problems["f"] == "split" and problems["g"] == "split"
    assert problems["h"] == "synthetic" and problems["i"] == "tagged"


def test_val_synthetic_parents_are_val_or_calib():
    job = SynthJob(mode="img2img", purpose="val_synthetic")
    assert job.kind == "caption"
    assert [p.id for p in eligible_parents(_parents(), job)] == ["d", "e"]
    tasks = plan_tasks(job, load_prompt_bank(), _parents(), random_weights=False)
    assert {t.split for t in tasks} == {"val_synthetic"}
    assert {t.parent.id for t in tasks} == {"d", "e"}
    assert all(t.label == t.parent.label for t in tasks)  # validator style: the parent's label


def test_val_synthetic_rejects_inpainting():
    with pytest.raises(ConfigError, match="val_synthetic takes mode text2img or img2img"):
        SynthJob(mode="inpaint_add", purpose="val_synthetic")


def test_mode_parent_labels(bank):
    assert [p.id for p in eligible_parents(_parents(), SynthJob(mode="inpaint_replace"))] == ["a"]
    assert [p.id for p in eligible_parents(_parents(), SynthJob(mode="inpaint_add"))] == ["b"]
    assert [p.id for p in eligible_parents(_parents(), SynthJob(mode="img2img", kind="hard_negative"))] == ["b"]


def test_replace_region_covers_every_roadwork_box_and_labels_negative(bank):
    job = SynthJob(mode="inpaint_replace", count=3, categories={"vehicle": 2, "ad": 1})
    tasks = plan_tasks(job, bank, _parents(), random_weights=False)
    assert [t.hn_category for t in tasks] == ["vehicle", "vehicle", "ad"]
    for t in tasks:
        assert t.label == "no_roadwork" and t.strength == 0.99
        assert all(box_inside(b, t.region) for b in t.parent.roadwork_boxes)
        assert [n for n, _ in t.boxes] == []  # the road box overlaps the region and is dropped
    # an explicit region that misses a roadwork box gives no label by construction: parent skipped
    miss = SynthJob(mode="inpaint_replace", region=(0.0, 0.0, 0.2, 0.2))
    assert replace_region(_parents()[0], miss) is None
    with pytest.raises(InputError, match="every roadwork object boxed"):
        plan_tasks(miss, bank, _parents(), random_weights=False)


def test_add_region_is_seeded_and_adds_a_box(bank):
    job = SynthJob(mode="inpaint_add", count=4, seed=11)
    tasks = plan_tasks(job, bank, _parents(), random_weights=False)
    for t in tasks:
        assert t.label == "roadwork"
        name, box = t.boxes[-1]
        assert name in bank.roadwork_objects and box == t.region
        assert 0 <= box[0] and box[0] + box[2] <= 1 and 0 <= box[1] and box[1] + box[3] <= 1
    assert add_region(3, job) == add_region(3, job) != add_region(4, job)


def test_plans_are_deterministic_and_seeds_consecutive(bank):
    job = SynthJob(mode="img2img", kind="caption", count=5, seed=100)
    a = plan_tasks(job, bank, _parents(), random_weights=False)
    b = plan_tasks(job, bank, list(reversed(_parents())), random_weights=False)  # query order does not matter
    assert a == b
    assert [t.seed for t in a] == [100, 101, 102, 103, 104]
    assert {t.strength for t in a} == {0.7}


def test_random_weights_mark_every_task(bank):
    tasks = plan_tasks(SynthJob(count=3), bank, [], random_weights=True)
    assert all(t.split is None and t.tags == ("not_admitted",) for t in tasks)
    assert plan_tasks(SynthJob(count=0), bank, [], random_weights=False) == []


def test_text2img_categories_spread_evenly_without_allocation(bank):
    tasks = plan_tasks(SynthJob(count=14), bank, [], random_weights=False)
    cats = [t.hn_category for t in tasks]
    assert {cats.count(c) for c in bank.categories} == {2}
    assert all(t.parent is None and t.label == "no_roadwork" for t in tasks)
    pos = plan_tasks(SynthJob(count=2, kind="positive"), bank, [], random_weights=False)
    assert [t.label for t in pos] == ["roadwork", "roadwork"] and pos[0].hn_category is None


def test_no_parent_is_a_clear_error(bank):
    with pytest.raises(InputError, match="split val or calib"):
        plan_tasks(SynthJob(mode="img2img", purpose="val_synthetic"), bank, _parents()[:3], random_weights=False)


def test_job_validation_names_the_parameter():
    with pytest.raises(ConfigError, match="Did you mean `img2img`"):
        SynthJob(mode="img2imgg")
    with pytest.raises(ConfigError, match="multiples of 8"):
        SynthJob(width=100)
    with pytest.raises(ConfigError, match="`strength`"):
        SynthJob(mode="img2img", strength=1.5)
    with pytest.raises(ConfigError, match="`region`"):
        SynthJob(mode="inpaint_add", region=(0.9, 0.9, 0.5, 0.5))
    with pytest.raises(ConfigError, match="`categories`"):
        plan_tasks(SynthJob(categories={"billbord": 1}), load_prompt_bank(), [], random_weights=False)
