"""Scene generator: exact labels, determinism, legible signs."""

from __future__ import annotations

import numpy as np
import pytest

from curation.demo.draw import BLACK, ORANGE, text_panel, ttc_sign_image
from curation.demo.scene import NEGATIVE_KINDS, POSITIVE_KINDS, render_scene, sample_spec, view
from curation.errors import ConfigError
from curation.schema import HN_CATEGORIES, PRIMITIVE_CLASSES, ROADWORK_PRIMITIVES


def _line_heights(mask: np.ndarray) -> list[int]:
    """Heights of the horizontal bands of ink in ``mask`` (one per text line)."""
    rows = list(mask.any(axis=1)) + [False]
    heights, start = [], None
    for i, ink in enumerate(rows):
        if ink and start is None:
            start = i
        elif not ink and start is not None:
            heights.append(i - start)
            start = None
    return heights


@pytest.mark.parametrize("kind", list(POSITIVE_KINDS) + list(NEGATIVE_KINDS))
def test_every_kind_is_labelled_by_its_boxes(kind: str) -> None:
    frame = view(render_scene(sample_spec(kind, seed=5, margin=8)), 3, -2)
    assert frame.image.size == (640, 360)
    assert frame.is_roadwork == (kind in POSITIVE_KINDS)
    assert {b.label for b in frame.boxes} <= set(PRIMITIVE_CLASSES)
    for b in frame.boxes:
        assert 0 <= b.x0 < b.x1 <= 640 and 0 <= b.y0 < b.y1 <= 360
    assert frame.spec.hn_category in ("", *HN_CATEGORIES)


def test_same_spec_same_pixels_other_seed_other_pixels() -> None:
    a = render_scene(sample_spec("cones", seed=11))
    b = render_scene(sample_spec("cones", seed=11))
    c = render_scene(sample_spec("cones", seed=12))
    assert a.canvas.tobytes() == b.canvas.tobytes() and a.boxes == b.boxes
    assert a.canvas.tobytes() != c.canvas.tobytes()


def test_view_shifts_the_boxes_with_the_camera() -> None:
    scene = render_scene(sample_spec("drums", seed=2, margin=8))
    base, moved = view(scene), view(scene, 4, 0)
    drums = lambda f: [b for b in f.boxes if b.label == "drum" and 4 < b.x0 and b.x1 < 600]  # noqa: E731
    assert drums(base) and drums(moved)
    assert drums(moved)[0].x0 == pytest.approx(drums(base)[0].x0 - 4)
    with pytest.raises(ConfigError, match="margin"):
        view(scene, 9, 0)


def test_restricted_classes_draw_only_those_roadwork_classes() -> None:
    allowed = frozenset({"cone", "drum"})
    for seed in range(4):
        frame = view(render_scene(sample_spec("mixed", seed=seed, size=(416, 416), classes=allowed)))
        assert frame.is_roadwork
        assert {b.label for b in frame.boxes} & set(ROADWORK_PRIMITIVES) <= allowed


def test_diamond_sign_text_is_legible() -> None:
    sign = ttc_sign_image("ROAD WORK AHEAD", 128)
    assert sign.size == (128, 128) and sign.getpixel((0, 0))[3] == 0  # transparent corners
    rgb = np.asarray(sign.convert("RGB")).astype(int)
    ink = rgb.max(axis=2) < 90
    heights = _line_heights(ink[32:96, 38:90])  # the text block, clear of the border
    assert len(heights) == 3 and min(heights) >= 10  # ROAD / WORK / AHEAD, cap height >= 10 px


def test_text_only_signs_are_big_enough_to_read() -> None:
    panel = np.asarray(text_panel("ROAD WORK AHEAD", 120, 60, ORANGE, BLACK)).astype(int)
    assert min(_line_heights(panel.max(axis=2)[4:-4, 4:-4] < 90)) >= 10
    for seed in range(6):
        frame = view(render_scene(sample_spec("sign_text_only", seed=seed)))
        (sign,) = [b for b in frame.boxes if b.label == "ttc_sign"]
        assert sign.x1 - sign.x0 >= 80 and sign.y1 - sign.y0 >= 40
        assert frame.text.split(" | ")[0] in ("ROAD WORK AHEAD", "DETOUR", "LANE CLOSED", "MEN WORKING", "ONE LANE ROAD")


def test_unknown_kind_names_the_nearest() -> None:
    with pytest.raises(ConfigError, match="Did you mean `cones`"):
        sample_spec("cone", seed=0)
