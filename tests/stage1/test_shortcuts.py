"""Shortcut cues, checked on images whose answers are known by construction."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from curation.errors import InputError
from curation.stage1.shortcuts import FLAG_AUROC, black_bar_share, image_cues, jpeg_quality, laplacian_variance, shortcut_table


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("quality", [20, 50, 75, 90, 97])
def test_jpeg_quality_is_read_back_from_the_tables(quality):
    noise = Image.fromarray(np.random.default_rng(quality).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    assert jpeg_quality(_jpeg(noise, quality)) == quality
    assert np.isnan(jpeg_quality(noise))  # not a JPEG


def test_black_bars_of_a_letterbox_by_hand():
    gray = np.zeros((100, 200))
    gray[20:80, :] = 128  # 40 of 100 rows black, top and bottom
    assert black_bar_share(gray) == pytest.approx(0.4)
    gray[:, :50] = 0  # and 50 of 200 columns on the left: content 60 × 150 of 100 × 200
    assert black_bar_share(gray) == pytest.approx(1 - 60 * 150 / (100 * 200))
    assert black_bar_share(np.full((10, 10), 200.0)) == 0.0


def test_blur_lowers_the_laplacian_variance():
    sharp = Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80), dtype=np.uint8))
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    assert laplacian_variance(np.asarray(blurred, float)) < 0.2 * laplacian_variance(np.asarray(sharp, float))
    cues = image_cues(sharp.convert("RGB"), synthetic=True)
    assert cues["synthetic"] == 1.0 and cues["megapixels"] == pytest.approx(80 * 80 / 1e6)


def test_a_cue_that_is_the_label_is_flagged_and_noise_is_not():
    rng = np.random.default_rng(1)
    y = np.array([0] * 50 + [1] * 50)
    wrong = rng.integers(0, 2, 100)
    rows = {r.cue: r for r in shortcut_table({"brightness": y + rng.uniform(0, 0.5, 100), "blur": rng.uniform(size=100)}, y, wrong)}
    assert rows["brightness"].label_auroc == 1.0 and rows["brightness"].flagged and rows["brightness"].label_corr > 0.8
    assert rows["blur"].label_auroc < FLAG_AUROC and not rows["blur"].flagged
    # a cue that is lower for positives is just as much a shortcut: the AUROC is folded
    assert shortcut_table({"dark": -y.astype(float)}, y, wrong)[0].label_auroc == 1.0


def test_undefined_values_and_constant_cues():
    y = np.array([0, 1, 0, 1])
    row = shortcut_table({"jpeg_quality": np.array([np.nan, 90.0, 75.0, np.nan])}, y, np.zeros(4))[0]
    assert row.n == 2 and row.error_auroc is None  # no errors at all: undefined, not 0.5
    assert shortcut_table({"size": np.ones(4)}, y, y)[0].label_auroc is None
    with pytest.raises(InputError, match="3 values for 4 samples"):
        shortcut_table({"size": np.ones(3)}, y, y)
