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
