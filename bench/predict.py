"""Benchmark: Stage-1 predictions into a dataset, the platform's path vs FiftyOne's ``apply_model``.

    python bench/predict.py                       # 2,000 images of 224-640 px, tiny-random preset, CPU
    python bench/predict.py --n 300               # quick check
    python bench/predict.py --bulk-workers 1      # also the serving bulk path (loader workers decode)

Both paths run the same model (``Stage1Model`` with the tiny-random backbone, seed 0) on the same
JPEGs, in the same run, on a private mongod:

* platform: ``curation.predict.job.predict_collection`` — PIL decode, one batched forward per batch,
  every Stage-1 field (``stage1``, ``stage1_views`` with one box per view, ``gate_features``,
  ``stage1_embedding``, ``model_version``) written with one ``set_values`` per field per batch into
  staged fields, then promoted in one ``update_many``;
* FiftyOne: ``dataset.apply_model(Stage1FiftyOneModel(model), "stage1", batch_size=...)`` —
  FiftyOne's loop: decode each image, ``predict_all`` per batch, then ``add_labels`` +
  ``SaveContext.save(sample)`` for each sample; it writes ``stage1`` only.

With ``--bulk-workers N`` a third path runs: ``predict_collection`` with a ``ServingModel`` on the
bulk path (``Settings.stage1_serving`` ``path: bulk``, eager, fp32, cpu), whose DataLoader workers
decode JPEGs and build views while the main process computes and writes.

FiftyOne ignores ``batch_size`` for this model (its images are ragged), so ``apply_model`` runs
one image per forward. After a warm-up of both paths, ``--rounds`` rounds alternate the order of
the two paths. Prints samples/s of each, the ratio, the model-only rate on already-decoded images
(the floor both share), and the largest difference in ``p_roadwork`` between the two.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


# Common frame sizes between 224 and 640 px (a real corpus has a handful of resolutions; a new
# input shape for every image makes torch's CPU kernels slower on first touch and would mostly
# measure that). ``--random-sizes`` draws every size at random instead.
SIZES = ((224, 224), (320, 240), (400, 300), (480, 270), (512, 384), (640, 360), (640, 480), (360, 640))


def write_images(out: Path, n: int, *, low: int, high: int, seed: int, random_sizes: bool = False) -> list[Path]:
    """``n`` JPEGs with sides in [low, high] px: coloured blocks plus noise (decode like photos)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sizes = [s for s in SIZES if low <= min(s) and max(s) <= high] or [(low, low)]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        if random_sizes:
            w, h = (int(v) for v in rng.integers(low, high + 1, size=2))
        else:
            w, h = sizes[int(rng.integers(len(sizes)))]
        blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        arr = np.kron(blocks, np.ones((h // 6 + 1, w // 8 + 1, 1), dtype=np.uint8))[:h, :w]
        arr = np.clip(arr.astype(np.int16) + rng.integers(-20, 20, size=arr.shape), 0, 255).astype(np.uint8)
        path = out / f"img{i:05d}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        paths.append(path)
    return paths


def _load() -> str:
    return "load average %.2f, %.2f, %.2f" % os.getloadavg()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images (samples) per path")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward, both paths")
    parser.add_argument("--min-size", type=int, default=224)
    parser.add_argument("--max-size", type=int, default=640)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (2 on this shared 2-core machine swung 3-75 samples/s between identical "
                             "runs: OpenMP threads spin at barriers when another process takes a core)")
    parser.add_argument("--random-sizes", action="store_true", help="a random size for every image")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the order of the two paths alternates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bulk-workers", type=int, default=0,
                        help="also time the serving bulk path with this many loader worker processes (0: skip it)")
    args = parser.parse_args(argv)

    from mongod import start_private_mongod  # tests/mongod.py: stopped and removed at exit

    if not os.environ.get("FIFTYONE_DATABASE_URI"):
        os.environ["FIFTYONE_DATABASE_URI"] = start_private_mongod()
    os.environ.setdefault("FIFTYONE_DATABASE_NAME", f"curation_bench_predict_{os.getpid()}")

    import fiftyone as fo
    import torch
    from PIL import Image

    from curation.predict.fo_model import Stage1FiftyOneModel
    from curation.predict.job import predict_collection
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model

    torch.set_num_threads(args.threads)
    model = Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0), seed=0)

    def platform(paths: list[Path]) -> tuple[float, dict]:
        ds = fo.Dataset()
        ds.add_samples([fo.Sample(filepath=str(p)) for p in paths], progress=False)
        start = time.perf_counter()
        report = predict_collection(ds, model, batch_size=args.batch_size, progress=False)
        seconds = time.perf_counter() - start
        assert report.n_predicted == len(paths) and not report.skipped, report
        p = dict(zip(*ds.values(["filepath", "stage1.p_roadwork"])))
        ds.delete()
        return seconds, p

    from curation.stage1.serving import ServingModel
    from curation.serving_config import ServingConfig

    served = ServingModel(model, ServingConfig(path="bulk", dtype="float32", device="cpu", batch_images=args.batch_size,
                                               num_workers=max(args.bulk_workers, 1)))

    def bulk(paths: list[Path]) -> tuple[float, dict]:
        ds = fo.Dataset()
        ds.add_samples([fo.Sample(filepath=str(p)) for p in paths], progress=False)
        start = time.perf_counter()
        report = predict_collection(ds, served, progress=False)
        seconds = time.perf_counter() - start
        assert report.n_predicted == len(paths) and not report.skipped, report
        p = dict(zip(*ds.values(["filepath", "stage1.p_roadwork"])))
        ds.delete()
        return seconds, p

    def apply_model(paths: list[Path]) -> tuple[float, dict]:
        ds = fo.Dataset()
        ds.add_samples([fo.Sample(filepath=str(p)) for p in paths], progress=False)
        start = time.perf_counter()
        ds.apply_model(Stage1FiftyOneModel(model), "stage1", batch_size=args.batch_size, progress=False)
        seconds = time.perf_counter() - start
        assert ds.exists("stage1").count() == len(paths)
        p = dict(zip(*ds.values(["filepath", "stage1.p_roadwork"])))
        ds.delete()
        return seconds, p

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        start = time.perf_counter()
        paths = write_images(Path(tmp) / "images", args.n, low=args.min_size, high=args.max_size, seed=args.seed,
                             random_sizes=args.random_sizes)
        print(f"{args.n} JPEGs of {args.min_size}-{args.max_size} px ({'random' if args.random_sizes else 'common'} "
              f"sizes) written in {time.perf_counter() - start:.1f} s; torch threads {args.threads}, "
              f"batch {args.batch_size}; {_load()}")

        # Warm-up: both paths once on a few images (first-call allocations, imports, schema).
        warm = paths[: 2 * args.batch_size]
        platform(warm)
        apply_model(warm)
        if args.bulk_workers:
            bulk(warm)

        # Model only, on already-decoded images: the floor both paths share.
        k = min(len(paths), 256)
        decoded = [Image.open(p).convert("RGB") for p in paths[:k]]
        start = time.perf_counter()
        for lo in range(0, k, args.batch_size):
            model.predict(decoded[lo : lo + args.batch_size])
        model_rate = k / (time.perf_counter() - start)
        del decoded
        print(f"model only (decoded images, {k}, batch {args.batch_size}): {model_rate:.1f} samples/s; {_load()}")

        runs = {"platform": platform, "apply_model": apply_model} | ({"bulk": bulk} if args.bulk_workers else {})
        what_of = {
            "platform": "predict_collection, 5 fields",
            "apply_model": "apply_model, stage1 only",
            "bulk": f"predict_collection, bulk loader, {args.bulk_workers} workers",
        }
        totals = dict.fromkeys(runs, 0.0)
        probs: dict[str, dict] = {}
        for r in range(args.rounds):
            for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                seconds, probs[name] = runs[name](paths)
                totals[name] += seconds
                what = what_of[name]
                print(f"round {r + 1} {name:>11} ({what}): {args.n} in {seconds:.1f} s = "
                      f"{args.n / seconds:.1f} samples/s; {_load()}")

        diff = max(abs(probs["platform"][f] - probs["apply_model"][f]) for f in probs["platform"])
        print(f"max |p_roadwork platform − apply_model| = {diff:.1e} (PIL vs FiftyOne's image reader)")
        n_total = args.n * args.rounds
        print(f"platform {n_total / totals['platform']:.1f} samples/s vs apply_model "
              f"{n_total / totals['apply_model']:.1f} samples/s → ratio {totals['apply_model'] / totals['platform']:.2f}× "
              f"(model-only floor {model_rate:.1f} samples/s)")
        if args.bulk_workers:
            diff = max(abs(probs["platform"][f] - probs["bulk"][f]) for f in probs["platform"])
            print(f"bulk loader {n_total / totals['bulk']:.1f} samples/s vs in-process platform → ratio "
                  f"{totals['platform'] / totals['bulk']:.2f}×; max |p_roadwork difference| = {diff:.1e}")


if __name__ == "__main__":
    main()
