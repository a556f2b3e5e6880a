"""Rendered sign cases shared by the OCR tests and bench/ocr.py: phrases, heights, fonts, view tiles."""

from __future__ import annotations

from curation.errors import InputError
from curation.stage2.signs import FONTS, Scene, SignSpec, render_scene

ROADWORK_PHRASES = ("ROAD WORK AHEAD", "DETOUR", "LANE CLOSED", "MEN WORKING", "ONE LANE ROAD")
EXPECTED_KEYWORD = {
    "ROAD WORK AHEAD": "road work",
    "DETOUR": "detour",
    "LANE CLOSED": "lane closed",
    "MEN WORKING": "men working",
    "ONE LANE ROAD": "one lane road",
}
SHOP_PHRASES = ("PIZZA", "SALE 50% OFF", "PHARMACY", "CAFE", "OPEN")
CAP_HEIGHTS = (8, 10, 12, 14, 18, 22, 26, 30)
ROTATIONS = (-5.0, -2.5, 0.0, 2.5, 5.0)


def tiles(grid: int = 3, overlap: float = 0.125) -> list[tuple[float, float, float, float]]:
    """Stage-1's g x g tiles with overlap, relative [x, y, w, h] (the views OCR is pointed at)."""
    side = 1.0 / (grid - (grid - 1) * overlap)
    step = side * (1.0 - overlap)
    return [(c * step, r * step, side, side) for r in range(grid) for c in range(grid)]


def evidence_view(sign_box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The tile covering most of the sign: what a working Stage-1 would flag as its evidence view."""

    def inter(t: tuple[float, float, float, float]) -> float:
        ix = min(t[0] + t[2], sign_box[0] + sign_box[2]) - max(t[0], sign_box[0])
        iy = min(t[1] + t[3], sign_box[1] + sign_box[3]) - max(t[1], sign_box[1])
        return max(ix, 0.0) * max(iy, 0.0)

    return max(tiles(), key=inter)


def roadwork_cases(heights=CAP_HEIGHTS, *, per_height: int = 5) -> list[tuple[int, str, Scene]]:
    """(cap height, phrase, scene): phrases x fonts x shapes x rotations cycled; signs that cannot fit
    a 224 frame at that height (long words at 30 px) are skipped."""
    cases = []
    for h in heights:
        made = 0
        for i in range(len(ROADWORK_PHRASES) * len(FONTS)):
            if made == per_height:
                break
            phrase = ROADWORK_PHRASES[i % len(ROADWORK_PHRASES)]
            spec = SignSpec(
                phrase,
                cap_height=h,
                font=FONTS[(i + h) % len(FONTS)],
                shape="diamond" if (i + h) % 2 else "rectangle",
                rotation=ROTATIONS[(i + h) % len(ROTATIONS)],
            )
            try:
                scene = render_scene(spec, seed=1000 * h + i)
            except InputError:
                continue
            cases.append((h, phrase, scene))
            made += 1
    return cases
