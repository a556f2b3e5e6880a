from __future__ import annotations

import pytest
import yaml

from curation.errors import ConfigError
from curation.schema import HN_CATEGORIES
from curation.synth.prompts import PromptBank, load_prompt_bank, pick


@pytest.fixture(scope="module")
def bank() -> PromptBank:
    return load_prompt_bank()


def test_default_bank_covers_every_orange_category(bank):
    assert bank.categories == tuple(c for c in HN_CATEGORIES if c != "other")
    assert bank.hard_negatives["sunset_light"].daytime == "Twilight"
    assert set(bank.scene.environment) >= {"Urban", "Highway"}
    assert set(bank.scene.daytime) >= {"Light", "Dark"}


def test_composition_is_deterministic_and_varies_with_seed(bank):
    a = bank.compose("hard_negative", category="crane", seed=7)
    assert a == bank.compose("hard_negative", category="crane", seed=7)
    prompts = {bank.compose("hard_negative", category="crane", seed=s).prompt for s in range(20)}
    assert len(prompts) > 5
    assert a.label == "no_roadwork" and a.category == "crane"
    assert a.daytime in bank.scene.daytime and a.scene_environment in bank.scene.environment
    assert "traffic cone" in a.negative_prompt  # hard negatives forbid roadwork


def test_kinds_carry_their_label(bank):
    pos = bank.compose("positive", seed=1)
    assert pos.label == "roadwork" and pos.category is None
    assert "traffic cone" not in pos.negative_prompt  # roadwork images must not forbid roadwork
    assert bank.compose("negative", seed=1).label == "no_roadwork"
    assert all(bank.compose("hard_negative", category="sunset_light", seed=s).daytime == "Twilight" for s in range(10))


def test_caption_keeps_the_parent_label(bank):
    c = bank.caption("a lane closed by cones", label="roadwork", seed=0)
    assert c.kind == "caption" and c.label == "roadwork" and c.prompt.endswith("a lane closed by cones")
    empty = bank.caption("No Description", label="no_roadwork", seed=0)
    assert empty.kind == "caption" and empty.label == "no_roadwork" and empty.prompt


def test_inpaint_prompts(bank):
    r = bank.inpaint_distractor("vehicle", seed=0)
    assert r.label == "no_roadwork" and r.category == "vehicle" and r.kind == "inpaint_replace"
    a = bank.inpaint_roadwork(seed=0)
    assert a.label == "roadwork" and a.category in bank.roadwork_objects


def test_pick_is_stable_across_processes():
    # sha256-based: a fixed answer, not Python's per-process hash randomization
    assert pick(("a", "b", "c"), 0, "style") == pick(("a", "b", "c"), 0, "style")
    assert [pick(tuple("abcdefgh"), s, "x") for s in range(4)] == [pick(tuple("abcdefgh"), s, "x") for s in range(4)]


def test_unknown_key_suggests_the_nearest(tmp_path):
    from curation.assets import asset_dir

    values = yaml.safe_load((asset_dir("models") / "synth" / "prompt_bank.yaml").read_text())
    values["negativ_prompt"] = values.pop("negative_prompt")
    with pytest.raises(ConfigError, match="Did you mean `negative_prompt`"):
        PromptBank.from_mapping(values, source="bank.yaml")


def test_unknown_category_and_kind_are_rejected(bank, tmp_path):
    with pytest.raises(ConfigError, match="Allowed"):
        bank.compose("hard_negative", category="cranes", seed=0)
    with pytest.raises(ConfigError, match="Did you mean `positive`"):
        bank.compose("positiv", seed=0)
    bad = tmp_path / "b.yaml"
    from curation.assets import asset_dir

    values = yaml.safe_load((asset_dir("models") / "synth" / "prompt_bank.yaml").read_text())
    values["hard_negatives"]["billboard"] = {"prompts": ["x"]}
    bad.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="billboard"):
        load_prompt_bank(bad)
