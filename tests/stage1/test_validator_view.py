from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from curation.errors import ConfigError
from curation.stage1.validator_view import LEVELS, query_recipe, validator_query


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))


def test_same_seed_same_bytes_and_size(scene):
    for seed in range(8):
        a, b = validator_query(scene, seed), validator_query(scene, seed)
        assert a.size == (224, 224) and a.mode == "RGB"
        assert a.tobytes() == b.tobytes()
    assert validator_query(scene, 1, level=1).tobytes() != validator_query(scene, 2, level=1).tobytes()


def test_level_zero_is_center_square_resized():
    image = Image.new("RGB", (400, 200), (0, 0, 255))
    image.paste((255, 128, 0), (100, 0, 300, 200))  # center 200×200 square is orange
    pixels = np.asarray(validator_query(image, seed=0, level=0), dtype=int)
    assert np.abs(pixels[8:-8, 8:-8] - [255, 128, 0]).max() <= 8  # JPEG noise only, no blue


def test_recipes_follow_levels():
    recipes = [query_recipe(seed, 320, 240) for seed in range(200)]
    assert {r.level for r in recipes} == set(LEVELS)
    for r in recipes:
        if r.level == 0:
            assert r.crop is None
        else:
            left, top, side = r.crop
            assert -20 <= r.angle <= 20 and 0 <= left <= 320 - side and 0 <= top <= 240 - side
            assert side * side >= 0.2 * 320 * 240 - 2 * side or side == 240
        if r.level < 3:
            assert r.noise == r.blur == 0
        if r.level == 2:
            assert max(r.saturation, r.contrast, r.downsample) <= 1
    assert any(r.noise and r.blur for r in recipes if r.level == 3)


def test_every_level_runs_and_bad_level_is_rejected(scene):
    for level in LEVELS:
        for seed in range(3):
            assert validator_query(scene, seed, level=level).size == (224, 224)
    with pytest.raises(ConfigError, match="level"):
        validator_query(scene, 0, level=4)


def test_box_fraction_kept_by_hand():
    from curation.stage1.validator_view import QueryRecipe, box_fraction_kept, evidence_kept

    # Level 0 on 640×360 keeps x ∈ [140, 500): a box over x ∈ [96, 160) keeps (160 − 140) / 64.
    assert box_fraction_kept(QueryRecipe(level=0), (0.15, 0.2, 0.25, 0.3), 640, 360) == pytest.approx(20 / 64)
    # Level 1, no rotation, crop (0, 0, 100): a 100×100 box at (50, 50) keeps a quarter.
    recipe = QueryRecipe(level=1, angle=0.0, crop=(0, 0, 100))
    assert box_fraction_kept(recipe, (50 / 400, 50 / 400, 150 / 400, 150 / 400), 400, 400) == pytest.approx(0.25)
    # Rotating 90° counter-clockwise about the centre (200, 200) moves a box right of centre above it.
    right = (300 / 400, 190 / 400, 320 / 400, 210 / 400)  # x 300-320, y 190-210
    above = QueryRecipe(level=1, angle=90.0, crop=(150, 50, 100))  # keeps x 150-250, y 50-150
    assert box_fraction_kept(above, right, 400, 400) == pytest.approx(1.0)
    assert box_fraction_kept(QueryRecipe(level=1, angle=0.0, crop=(150, 50, 100)), right, 400, 400) == 0.0
    assert evidence_kept(above, [right, (0, 0, 0.01, 0.01)], 400, 400)
    assert not evidence_kept(QueryRecipe(level=0), [(0.0, 0.0, 0.1, 0.1)], 640, 360)
    assert box_fraction_kept(QueryRecipe(level=0), (0.3, 0.3, 0.3, 0.5), 640, 360) == 0.0  # empty box
