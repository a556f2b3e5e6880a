"""Benchmark: NATIX-style parquet ingest (images/s) vs a naive per-row baseline, and peak memory.

    python bench/ingest.py                       # 2000 rows timed, peak RSS at 1000 and 4000 rows
    python bench/ingest.py --rows 500 --sizes 250,1000 --size 320x180

Both paths do the same per-image work (read the row, validate/decode, sha256 + perceptual hash,
write the image once to the media store); they differ in how the dataset is written:

* ``curation.ingest.job``: streamed record batches, a decode thread pool, ``add_samples`` per batch;
* naive baseline: one ``dataset.add_sample(sample)`` + ``sample.save()`` per row.

Peak memory is the child process's max RSS (``ru_maxrss``) for a fresh import at each corpus
size; it should stay flat as rows grow, because parquet is read one record batch at a time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_NAME", f"curation_bench_{os.getpid()}")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_corpus(out: Path, rows: int, size: tuple[int, int], seed: int = 0) -> Path:
    """Write NATIX-style parquet (dotted columns, tags as strings) with ``rows`` distinct JPEGs."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    out.mkdir(parents=True, exist_ok=True)
    writer = None
    batch = []
    for i in range(rows):
        blocks = rng.integers(0, 256, size=(9, 16, 3), dtype=np.uint8)
        arr = np.kron(blocks, np.ones((h // 9 + 1, w // 16 + 1, 1), dtype=np.uint8))[:h, :w]
        arr = np.clip(arr.astype(np.int16) + rng.integers(-12, 12, size=arr.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=85)
        label = int(rng.random() < 0.8)
        batch.append({
            "image": {"bytes": buf.getvalue(), "path": None}, "id": i, "width": w, "height": h, "license": 1,
            "date_captured": "2024-05-01", "flickr_url": "", "coco_url": "", "gps": "[40.44, -79.99]",
            "city_name": "Pittsburgh", "scene_description": "cones ahead" if label else "",
            "video_info.frame_id": str(i % 5), "video_info.seq_id": "0", "video_info.vid_id": f"v{i // 5}",
            "scene_level_tags.daytime": "['Light']", "scene_level_tags.scene_environment": "['Urban']",
            "scene_level_tags.travel_alteration": "['Lane Shift']", "scene_level_tags.weather": "['Sunny']",
            "label": label,
        })
        if len(batch) == 64 or i == rows - 1:
            table = pa.Table.from_pylist(batch)
            if writer is None:
                writer = pq.ParquetWriter(out / "train-00000-of-00001.parquet", table.schema)
            writer.write_table(table, row_group_size=64)
            batch = []
    if writer is not None:
        writer.close()
    return out


def run_child(mode: str, parquet: Path, home: Path) -> dict:
    """Import in this process; print timing and peak RSS as JSON."""
    from curation import store
    from curation.ingest.job import ingest, make_importer
    from curation.settings import Settings

    settings = Settings.load(env={}).replace(dataset_name=f"bench_{uuid.uuid4().hex[:8]}", home=home)
    dataset = store.open_dataset(settings)
    try:
        start = time.perf_counter()
        if mode == "ingest":
            summary = ingest(dataset, make_importer("natix", parquet), settings=settings, progress=False)
            n = summary.added
        else:
            n = naive(dataset, parquet, settings)
        elapsed = time.perf_counter() - start
        return {"mode": mode, "images": n, "seconds": round(elapsed, 2), "images_per_s": round(n / elapsed, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    finally:
        dataset.delete()


def naive(dataset, parquet: Path, settings) -> int:
    """The baseline: the same per-image work (decode, hashes, media write, the same merged field
    values) but one ``add_sample`` + ``save`` per row, no batching, no decode threads."""
    import fiftyone as fo

    from curation import store
    from curation.ingest.rules import Incoming, merge
    from curation.slices import SliceConfig
    from curation.ingest.sources.common import SourceRecord
    from curation.ingest.sources.natix import NatixImporter
    from curation.schema import Split
    from curation.media import MediaLimits, MediaStore, decode_image

    importer = NatixImporter(parquet)
    importer.setup()
    media = MediaStore(settings.media_root)
    n = 0
    for record in importer:
        if not isinstance(record, SourceRecord):
            continue
        image = decode_image(record.read(), name=record.name, limits=MediaLimits())
        path = media.put(image)
        state = merge({"content_hash": image.sha256}, [Incoming(record, Split.TRAIN, image)], slice_config=SliceConfig()).state
        fields = {k: store._to_fo(k, v) for k, v in state.items() if v not in (None, [], {})}
        sample = fo.Sample(filepath=str(path), content_hash=image.sha256, phash=image.phash, **fields)
        dataset.add_sample(sample)
        sample.save()
        n += 1
    return n


def child(mode: str, parquet: Path) -> dict:
    with tempfile.TemporaryDirectory() as home:
        cmd = [sys.executable, __file__, "--child", mode, "--parquet", str(parquet), "--home", home]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="rows for the throughput comparison")
    parser.add_argument("--sizes", default="1000,4000", help="two corpus sizes for peak memory")
    parser.add_argument("--size", default="640x360", help="image size WxH")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench_ingest.json")
    parser.add_argument("--child", choices=("ingest", "naive"))
    parser.add_argument("--parquet", type=Path)
    parser.add_argument("--home", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.parquet, args.home)))
        return
    w, h = (int(v) for v in args.size.split("x"))
    results: dict = {"image_size": args.size, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_corpus(Path(tmp) / "throughput", args.rows, (w, h))
        results["parquet_mb"] = round(sum(f.stat().st_size for f in corpus.iterdir()) / 2**20, 1)
        results["ingest"] = child("ingest", corpus)
        results["naive"] = child("naive", corpus)
        results["speedup"] = round(results["ingest"]["images_per_s"] / results["naive"]["images_per_s"], 2)
        memory = {}
        for n in (int(v) for v in args.sizes.split(",")):
            path = make_corpus(Path(tmp) / f"mem{n}", n, (w, h), seed=n)
            run = child("ingest", path)
            memory[n] = {"peak_rss_mb": run["peak_rss_mb"], "images_per_s": run["images_per_s"],
                         "parquet_mb": round(sum(f.stat().st_size for f in path.iterdir()) / 2**20, 1)}
        results["peak_memory_by_rows"] = memory
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
