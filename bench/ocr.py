"""OCR cost on this CPU: seconds per image at 224x224 (validator query) and 1920x1080 (dashcam frame),
reading the whole image against reading only Stage-1's evidence view (the 3x3 tile over the sign).

    .venv/bin/python bench/ocr.py [--backend rapidocr] [--images 4] [--repeats 2]

Prints one row per (size, mode) with how often the sign's keyword was found, and the whole/views
time ratio per size. Timings include the crop, the
upscale and both OCR stages; the engine is loaded and warmed before timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "evidence"))

from sign_cases import ROADWORK_PHRASES, evidence_view  # noqa: E402

from curation.stage2.keywords import text_evidence  # noqa: E402
from curation.stage2.ocr import ReadConfig, make_backend, read_text  # noqa: E402
from curation.stage2.signs import SignSpec, render_scene  # noqa: E402

# (size, cap height in px). A 3x3 tile of a 224 query is ~85 px: it holds a whole sign only when the
# text is small, so 224 is measured with small and medium text.
SIZES = {
    "224 @ 8px": ((224, 224), 8),
    "224 @ 16px": ((224, 224), 16),
    "1920x1080 @ 40px": ((1920, 1080), 40),
}
MODES = {"whole image": ReadConfig(max_views=0), "evidence view": ReadConfig(whole_image=False, max_views=1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="rapidocr")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    backend = make_backend(args.backend)
    print(f"backend={args.backend} cpus={os.cpu_count()} images={args.images} repeats={args.repeats}")
    for name, (size, cap) in SIZES.items():
        scenes = [
            render_scene(SignSpec(ROADWORK_PHRASES[i % len(ROADWORK_PHRASES)], cap_height=cap), size=size, seed=i)
            for i in range(args.images)
        ]
        read_text(backend, scenes[0].image, views=[evidence_view(scenes[0].sign_box)])  # load + warm up
        per_mode = {}
        for mode, cfg in MODES.items():
            found, start = 0, time.perf_counter()
            for _ in range(args.repeats):
                for s in scenes:
                    boxes = read_text(backend, s.image, views=[evidence_view(s.sign_box)], config=cfg)
                    found += bool(text_evidence([b.text for b in boxes], [b.confidence for b in boxes]).keywords)
            per_mode[mode] = (time.perf_counter() - start) / (args.repeats * len(scenes))
            n = args.repeats * len(scenes)
            print(f"{name:>16}  {mode:<14} {per_mode[mode]:7.3f} s/image   keyword found {found}/{n}")
        print(f"{name:>16}  whole/views ratio {per_mode['whole image'] / per_mode['evidence view']:.2f}x")


if __name__ == "__main__":
    main()
