"""The StreetVision contracts as data, checked against the subnet's own rendering.

The reference cases in tests/data/streetvision were produced by scripts/streetvision_reference.py,
which ran the subnet's code (image_transforms.py and protocol.py at 28a1755, e02ce2c, cc3e0b9) and
recorded the parameters it drew plus the pixels it handed to the JPEG encoder (SHA-256 for every
case, full pixels for a few) and the JPEG bytes it put on the wire.

JPEG tolerance: our pre-JPEG pixels must be identical to the subnet's. After the JPEG round trip we
allow max |diff| <= 4 and mean |diff| <= 0.25 grey levels, because the bytes depend on the libjpeg
build behind Pillow (libjpeg-turbo versions and SIMD/float DCT paths differ by a level or two at
quality 75); on the machine that recorded the reference the round trips are byte-identical.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curation.errors import ConfigError
from curation.stage1 import query_policies as qp

DATA = Path(__file__).resolve().parents[1] / "data" / "streetvision"
META = json.loads((DATA / "cases.json").read_text())
CASES = META["cases"]
ARRAYS = np.load(DATA / "reference.npz")
JPEG_MAX_ABS, JPEG_MEAN_ABS = 4, 0.25
AUGMENTED = ("streetvision-2025-11", "streetvision-2026-04")


def recipe_from_case(policy: qp.QueryPolicy, case: dict) -> qp.RenderRecipe:
    """The subnet's recorded draws as our recipe (severities mapped by the subnet's own codes)."""
    params = case["params"]
    crop = params.get("RandomResizedCropWithParams", {}).get("crop_params")
    by_code = dict(case["distortions"])
    return qp.RenderRecipe(
        level=case["level"],
        angle=params.get("RandomRotationWithParams", {}).get("angle", 0.0),
        crop=tuple(crop) if crop else None,
        hflip=bool(params.get("RandomHorizontalFlipWithParams", {}).get("do_flip", False)),
        vflip=bool(params.get("RandomVerticalFlipWithParams", {}).get("do_flip", False)),
        severities=tuple(by_code.get(d.subnet_code, 0) for _, d in policy.rendering.distortions.enabled()),
        noise_seed=case["noise_seed"] or 0,
    )


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


# (a) same input, same sampled parameters -> the subnet's pixels ----------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["key"] for c in CASES])
def test_renderer_matches_subnet(case):
    policy = qp.load_policy(case["policy"])
    image = Image.fromarray(ARRAYS[f"input__{case['image']}"])
    ours = np.asarray(qp.render_recipe(image, policy, recipe_from_case(policy, case)))
    assert list(ours.shape) == case["pre_jpeg_shape"]
    if f"pre__{case['key']}" in ARRAYS.files:
        theirs = ARRAYS[f"pre__{case['key']}"]
        diff = np.abs(ours.astype(np.int16) - theirs)
        assert diff.max() == 0, f"{(diff > 0).sum()} pixels differ, max {diff.max()}"
    assert hashlib.sha256(ours.tobytes()).hexdigest() == case["pre_jpeg_sha256"], "pre-JPEG pixels differ from the subnet's"

    wire = ARRAYS[f"jpeg__{case['key']}"].tobytes()
    diff = np.abs(decode(qp.jpeg_bytes(Image.fromarray(ours), policy.rendering.jpeg_quality)) - decode(wire))
    assert diff.max() <= JPEG_MAX_ABS and diff.mean() <= JPEG_MEAN_ABS, (diff.max(), diff.mean())


def test_reference_covers_every_level_and_distortion():
    """Guards the fixture itself: each level of A and B, and each distortion at severities 1 and 2."""
    for name in AUGMENTED:
        cases = [c for c in CASES if c["policy"] == name]
        assert {c["level"] for c in cases} == {0, 1, 2, 3}
        seen = {tuple(d) for c in cases for d in c["distortions"]}
        assert {(code, s) for code in ("CS", "CC", "JPEG", "GNC", "GB") for s in (1, 2)} <= seen
    assert {c["image"] for c in CASES if c["policy"] == "streetvision-2026-05"} == {"wide_192x108", "square_160x160", "tall_97x161"}


def test_letterbox_geometry_matches_subnet():
    for case in (c for c in CASES if "ResizeWithPadding" in c["params"]):
        recorded = case["params"]["ResizeWithPadding"]
        h, w = ARRAYS[f"input__{case['image']}"].shape[:2]
        new_w, new_h, left, top = qp.letterbox_geometry(w, h, 224)
        assert [new_h, new_w] == recorded["new_size"]
        assert [left, top] == recorded["padding"][:2]


# (b) the flips never fire in A and B -------------------------------------------------------------------


def test_recorded_flips_never_fire():
    for case in (c for c in CASES if c["policy"] in AUGMENTED and c["level"]):
        assert case["params"]["RandomHorizontalFlipWithParams"] == {}  # empty params -> do_flip False
        assert case["params"]["RandomVerticalFlipWithParams"] == {}
    for name in AUGMENTED:
        audit = META["audit"][name]
        assert audit["augmented_runs"] >= 300
        assert audit["hflip_calls"] == 0 and audit["vflip_calls"] == 0
        assert audit["distinct_flip_params"] == [{"RandomHorizontalFlipWithParams": {}, "RandomVerticalFlipWithParams": {}}]
        assert qp.load_policy(name).rendering.flips_fire is False


def test_a_flip_would_be_visible():
    """So the pixel matches above really exclude flips: a flipped recipe renders differently."""
    case = next(c for c in CASES if c["policy"] == "streetvision-2025-11" and c["level"] == 1)
    policy = qp.load_policy(case["policy"])
    image = Image.fromarray(ARRAYS[f"input__{case['image']}"])
    recipe = recipe_from_case(policy, case)
    flipped = qp.RenderRecipe(**{**recipe.__dict__, "hflip": True})
    assert not np.array_equal(np.asarray(qp.render_recipe(image, policy, recipe)), np.asarray(qp.render_recipe(image, policy, flipped)))


# (c) the policy files --------------------------------------------------------------------------------


def test_policies_load_typed():
    names = qp.available_policies()
    assert names == ["streetvision-2025-11", "streetvision-2026-04", "streetvision-2026-05"]
    for name in names:
        policy = qp.load_policy(name)
        assert policy.name == name
        assert isinstance(policy.rendering, qp.Rendering) and isinstance(policy.reward, qp.Reward)
        assert isinstance(policy.sources, qp.Sources) and isinstance(policy.commits, tuple)
        assert all(isinstance(c, str) for c in policy.commits) and policy.provenance
        assert isinstance(policy.rendering.jpeg_quality, int) and policy.rendering.jpeg_quality == 75
        assert all(isinstance(p, float) for p in policy.rendering.level_probs)
        assert policy.timeout_s == 9.0
        r = policy.reward
        assert (r.mcc_window, r.accuracy_window, r.mcc_weight, r.accuracy_weight, r.exponent) == (100, 10, 0.5, 0.5, 3.0)
        assert isinstance(r.mcc_window, int) and r.rounding == "half_to_even"
        for _, d in policy.rendering.distortions.enabled():
            assert isinstance(d, qp.Distortion) and all(isinstance(p, float) for p in d.params)
            assert all(isinstance(m, int) for m in d.max_severity)


def test_contract_facts():
    a, b, c = (qp.load_policy(n) for n in qp.available_policies())
    assert a.rendering.level0 == "center_crop" and a.rendering.augmented == "rotate_then_crop"
    assert a.rendering.crop_scale == (0.2, 1.0) and a.rendering.crop_ratio == (1.0, 1.0)
    assert b.rendering.level0 == "letterbox" and b.rendering.augmented == "letterbox_then_rotate" and b.rendering.crop_scale is None
    for p in (a, b):
        assert p.rendering.level_probs == (0.25,) * 4 and p.rendering.rotation_degrees == 20.0
        assert (p.sources.natix_real, p.sources.synthetic, p.sources.natix_api, p.consensus_share) == (0.5, 0.5, 0.0, 0.0)
    assert c.rendering.kind == "native" and c.rendering.output_size is None
    assert c.sources.natix_real == pytest.approx(1 / 3) and c.sources.natix_api == pytest.approx(1 / 3)
    assert c.consensus_share == 0.1
    assert qp.DEFAULT_POLICY == max(qp.available_policies(), key=lambda n: qp.load_policy(n).valid_from)
    assert a.valid_until == b.valid_from and b.valid_until == c.valid_from


def test_unknown_policy_suggests_nearest():
    with pytest.raises(ConfigError, match="streetvision-2026-05"):
        qp.load_policy("streetvision-2026-5")


@pytest.mark.parametrize(
    "text",
    [
        "name: x\n  rendering: [unclosed\n",  # not YAML
        (Path(qp.policy_dir()) / "streetvision-2026-04.yaml").read_text().replace("kind: augment", "kind: augmnt"),
        (Path(qp.policy_dir()) / "streetvision-2026-04.yaml").read_text().replace("[0.25, 0.25, 0.25, 0.25]", "[0.5, 0.25, 0.25, 0.25]"),
        (Path(qp.policy_dir()) / "streetvision-2026-04.yaml").read_text().replace("timeout_s: 9.0", "timeout_secs: 9.0"),
        (Path(qp.policy_dir()) / "streetvision-2026-04.yaml").read_text().replace("mcc_window: 100", "mcc_window: hundred"),
    ],
    ids=["yaml", "kind", "level-probs", "unknown-key", "type"],
)
def test_malformed_file_names_it(tmp_path, text):
    path = tmp_path / "broken-policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="broken-policy.yaml"):
        qp.load_policy(path)


# (d) contract C: native size, JPEG quality 75 --------------------------------------------------------


def test_native_contract_keeps_size_and_quality_75():
    policy = qp.load_policy("streetvision-2026-05")
    image = Image.fromarray(ARRAYS["input__tall_97x161"])
    query = qp.render_query(image, policy, seed=5)
    assert query.size == image.size == (97, 161)
    expected = {q: np.asarray(qp.jpeg_roundtrip(image, q)) for q in (60, 75, 90)}
    assert np.array_equal(np.asarray(query), expected[75])
    assert not np.array_equal(expected[75], expected[90]) and not np.array_equal(expected[75], expected[60])
    # The subnet saves with Pillow's default quality; its wire bytes carry the quality-75 tables.
    wire = ARRAYS["jpeg__streetvision-2026-05__tall_97x161__native"].tobytes()
    ours = Image.open(io.BytesIO(qp.jpeg_bytes(image, 75)))
    assert Image.open(io.BytesIO(wire)).quantization == ours.quantization
    assert Image.open(io.BytesIO(wire)).size == (97, 161)


# (e) level frequencies and sampler sanity -------------------------------------------------------------


@pytest.mark.parametrize("name", AUGMENTED)
def test_level_frequencies(name):
    policy = qp.load_policy(name)
    n = 4000
    counts = Counter(qp.sample_recipe(policy, seed, 192, 108).level for seed in range(n))
    assert sorted(counts) == [0, 1, 2, 3]
    for level in range(4):
        assert abs(counts[level] / n - 0.25) < 0.03, counts  # 4.4 standard deviations
    subnet = META["audit"][name]["level_counts"]  # the subnet's own draw, 1000 runs
    assert all(abs(c / sum(subnet) - 0.25) < 0.05 for c in subnet)


def test_sampled_recipes_respect_the_contract():
    a = qp.load_policy("streetvision-2025-11")
    caps = [d.max_severity for _, d in a.rendering.distortions.enabled()]
    for seed in range(300):
        r = qp.sample_recipe(a, seed, 192, 108)
        assert all(s <= cap[r.level] for s, cap in zip(r.severities, caps, strict=True))
        assert not r.hflip and not r.vflip
        if r.level:
            top, left, h, w = r.crop
            assert h == w and 0 <= top <= 108 - h and 0 <= left <= 192 - w
            assert 0.2 * 192 * 108 - 2 * h <= h * w <= 192 * 108 and -20 <= r.angle <= 20
        else:
            assert r.crop is None


def test_render_query_is_deterministic():
    image = Image.fromarray(ARRAYS["input__wide_192x108"])
    for name in qp.available_policies():
        policy = qp.load_policy(name)
        first, again = (np.asarray(qp.render_query(image, policy, seed=11, level=3 if name in AUGMENTED else None)) for _ in range(2))
        assert np.array_equal(first, again)
        if name in AUGMENTED:
            assert first.shape == (224, 224, 3)
            assert not np.array_equal(first, np.asarray(qp.render_query(image, policy, seed=12, level=3)))


def test_contract_query_dispatches_to_the_platform_model_or_the_exact_contract():
    from curation.stage1.query_policies import contract_query, render_query
    from curation.stage1.validator_view import validator_query

    image = Image.fromarray(np.random.default_rng(4).integers(0, 256, (90, 160, 3), dtype=np.uint8))
    assert contract_query(image, 7, None).tobytes() == validator_query(image, 7).tobytes()
    for name in ("streetvision-2025-11", "streetvision-2026-05"):
        assert contract_query(image, 7, name).tobytes() == render_query(image, qp.load_policy(name), 7).tobytes()
    assert contract_query(image, 7, "streetvision-2026-05").size == (160, 90)  # native: no resize


def test_a_contract_is_part_of_the_feature_cache_key_and_none_keeps_old_names():
    from curation.stage1.cache import CacheSpec
    from curation.stage1.views import ViewPolicy

    base = CacheSpec(backbone_id="b@1", views=ViewPolicy(), hidden_size=8)
    before = {"backbone_id": "b@1", "views": {"grid": 3, "overlap": 0.125, "flip": False, "size": 224}, "hidden_size": 8,
              "dtype": "float16", "compute_dtype": "float32", "validator_level": None, "jpeg_quality": 75}  # the fields before contracts
    assert base.namespace() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:20]
    native = CacheSpec(backbone_id="b@1", views=ViewPolicy(), hidden_size=8, query_policy="streetvision-2026-05")
    assert native.namespace() != base.namespace()


def test_training_rejects_an_unknown_contract_by_name():
    from curation.stage1.train import TrainConfig

    with pytest.raises(ConfigError, match="streetvision-2026-05"):
        TrainConfig(query_policy="streetvision-2026-5")


def test_settings_default_to_the_newest_contract_and_empty_means_the_platform_model():
    from curation.settings import Settings
    from curation.stage1.query_policies import contract_query
    from curation.stage1.validator_view import validator_query

    assert Settings.load(env={}).query_policy == qp.DEFAULT_POLICY == "streetvision-2026-05"
    platform = Settings.load(env={"CURATION_QUERY_POLICY": ""}).query_policy
    image = Image.fromarray(np.random.default_rng(5).integers(0, 256, (90, 160, 3), dtype=np.uint8))
    assert contract_query(image, 3, platform).tobytes() == validator_query(image, 3).tobytes()


def test_synthetic_positives_show_one_subtle_element_from_2026_02_20():
    for name in qp.available_policies():
        sources = qp.load_policy(name).sources
        assert len(sources.synthetic_positive_elements) == 5 and "a single orange traffic cone" in sources.synthetic_positive_elements
        assert sources.synthetic_positive_since == "2026-02-20"
