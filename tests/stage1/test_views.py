from __future__ import annotations

import numpy as np
import pytest
import torch

from curation.errors import ConfigError, InputError
from curation.stage1.views import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViewPolicy,
    build_views,
    tile_extent,
    view_boxes,
    view_pixel_boxes,
)


@pytest.mark.parametrize("kwargs", [{"grid": -1}, {"overlap": 0.5}, {"overlap": -0.1}, {"size": 8}, {"grid": 2.5}])
def test_policy_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        ViewPolicy(**kwargs)


def test_num_views_and_names():
    assert ViewPolicy().num_views == 10
    assert ViewPolicy(flip=True).num_views == 20
    names = ViewPolicy(grid=2, flip=True).view_names()
    assert names[:5] == ["global", "r0c0", "r0c1", "r1c0", "r1c1"] and names[5] == "global_flip"


def test_tile_extent_spans_image_exactly():
    side, stride = tile_extent(3, 0.125)
    assert side == pytest.approx(1 / 2.75)
    assert 2 * stride + side == pytest.approx(1.0)


def test_exact_boxes_hand_computed():
    # side = 1000/2.75 = 363.64 px, stride = 318.18 px → edges floored/ceiled outwards.
    boxes = view_pixel_boxes(ViewPolicy(), 1000, 1000)
    starts, ends = [0, 318, 636], [364, 682, 1000]
    expected = [[0, 0, 1000, 1000]] + [[starts[c], starts[r], ends[c], ends[r]] for r in range(3) for c in range(3)]
    assert boxes.tolist() == expected
    rel = view_boxes(ViewPolicy(), 1000, 1000)
    assert rel[5].tolist() == pytest.approx([0.318, 0.318, 0.364, 0.364])  # center tile r1c1


@pytest.mark.parametrize("size", [(224, 224), (1920, 1080), (640, 480), (50, 30), (5, 3), (1, 1)])
@pytest.mark.parametrize("grid", [1, 3, 4])
def test_tiles_cover_every_pixel(size, grid):
    width, height = size
    covered = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in view_pixel_boxes(ViewPolicy(grid=grid), width, height)[1:]:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_overlap_amount_matches_policy():
    for overlap in (0.0, 0.125, 0.15):
        boxes = view_pixel_boxes(ViewPolicy(overlap=overlap), 1920, 1080)
        tile0, tile1 = boxes[1], boxes[2]
        shared = tile0[2] - tile1[0]
        assert shared / (tile0[2] - tile0[0]) == pytest.approx(overlap, abs=2 / (tile0[2] - tile0[0]))


def test_flipped_views_repeat_boxes():
    boxes = view_boxes(ViewPolicy(flip=True), 640, 480)
    assert boxes.shape == (20, 4)
    np.testing.assert_array_equal(boxes[:10], boxes[10:])


def test_build_views_content_and_normalisation():
    image = torch.zeros(3, 300, 300, dtype=torch.uint8)
    image[:, :, :150] = 255  # left half white
    views = build_views([image, image], ViewPolicy())
    assert views.shape == (20, 3, 224, 224) and views.dtype == torch.float32
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    black = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(views[1].mean(dim=(1, 2)), white, atol=1e-4, rtol=0)  # r0c0: all white
    torch.testing.assert_close(views[3].mean(dim=(1, 2)), black, atol=1e-4, rtol=0)  # r0c2: all black
    torch.testing.assert_close(views[10:], views[:10])  # second image, same views


def test_flip_views_are_mirrors():
    image = torch.randint(0, 256, (3, 90, 160), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    views = build_views([image], ViewPolicy(grid=2, flip=True, size=32))
    assert views.shape == (10, 3, 32, 32)
    torch.testing.assert_close(views[5:], views[:5].flip(-1))


def test_images_smaller_than_a_tile_and_validator_queries():
    tiny = torch.full((3, 3, 5), 128, dtype=torch.uint8)
    query = torch.full((3, 224, 224), 128, dtype=torch.uint8)
    views = build_views([tiny, query], ViewPolicy())
    assert views.shape == (20, 3, 224, 224)
    assert torch.isfinite(views).all()
    torch.testing.assert_close(views[:10], views[10:])  # constant gray stays constant gray


def test_build_views_rejects_bad_images():
    with pytest.raises(InputError, match="uint8"):
        build_views([torch.zeros(3, 10, 10)], ViewPolicy())
    with pytest.raises(InputError, match="empty"):
        build_views([], ViewPolicy())


def test_downscaled_views_are_antialiased():
    stripes = torch.zeros(3, 896, 896, dtype=torch.uint8)
    stripes[:, :, ::2] = 255  # 1-px columns: plain bilinear at 4× would alias to stripes
    global_view = build_views([stripes], ViewPolicy(grid=0))[0]  # [3, 224, 224]
    gray = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(global_view[:, 8:-8, 8:-8].amax(dim=(1, 2)), gray, atol=0.05, rtol=0)
