"""Benchmark: Stage-1 bulk prediction in one process vs on Ray (1 and 2 model actors), and MongoDB write rate.

    python bench/ray_predict.py                 # 2,000 JPEGs of 224-416 px, tiny-random preset, CPU
    python bench/ray_predict.py --n 300         # quick check

All paths run ``predict_collection`` (same model: tiny-random backbone, seed 0; same JPEGs; every
Stage-1 field written through the staged bulk path) on a private mongod, in one run:

* process: decode and forward in this process (``batch_size`` images per forward, ``--threads`` torch threads);
* ray-1, ray-2: ``engine=RayEngine(...)`` on a local Ray: decode tasks, 1 or 2 model actors (1 CPU,
  1 torch thread each), the driver writing. Each Ray run includes starting its actors (seconds: the
  actor imports torch and gets the model from the object store), as a real run does.

Then the write side alone: the 5 Stage-1 fields of every sample written into staged fields
(``set_values`` per field, 256 samples per write) and promoted, with no model: the rate the driver
can store predictions at, which bounds a cluster of any size (see the printed plan).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images (samples)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward / per Ray block")
    parser.add_argument("--min-size", type=int, default=224)
    parser.add_argument("--max-size", type=int, default=416)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the single process (actors get 1 each)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray model actor counts to time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from mongod import start_private_mongod  # tests/mongod.py: stopped and removed at exit

    if not os.environ.get("FIFTYONE_DATABASE_URI"):
        os.environ["FIFTYONE_DATABASE_URI"] = start_private_mongod()
    os.environ.setdefault("FIFTYONE_DATABASE_NAME", f"curation_bench_ray_{os.getpid()}")

    import fiftyone as fo
    import ray
    import torch
    from predict import write_images  # bench/predict.py: coloured blocks + noise, common frame sizes

    from curation import store
    from curation.predict.job import PREDICTION_FIELDS, STAGING_RUN_FIELD, _write_staged, predict_collection
    from curation.predict.ray_engine import RayEngine
    from curation.settings import RaySettings
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model

    torch.set_num_threads(args.threads)
    model = Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0), seed=0)

    def timed(paths: list[Path], engine: RayEngine | None) -> tuple[float, dict, fo.Dataset]:
        ds = fo.Dataset()
        ds.add_samples([fo.Sample(filepath=str(p)) for p in paths], progress=False)
        start = time.perf_counter()
        report = predict_collection(ds, model, batch_size=args.batch_size, engine=engine, progress=True)
        seconds = time.perf_counter() - start
        assert report.n_predicted == len(paths) and not report.skipped, report
        return seconds, dict(zip(*ds.values(["filepath", "stage1.p_roadwork"]))), ds

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        start = time.perf_counter()
        paths = write_images(Path(tmp) / "images", args.n, low=args.min_size, high=args.max_size, seed=args.seed)
        print(
            f"{args.n} JPEGs of {args.min_size}-{args.max_size} px written in {time.perf_counter() - start:.1f} s; "
            f"{os.cpu_count()} CPUs; batch {args.batch_size}; process torch threads {args.threads}; {_load()}"
        )
        start = time.perf_counter()
        ray.init(num_cpus=max(os.cpu_count() or 1, max(args.actors) + 1), include_dashboard=False, logging_level="WARNING")
        ray.data.DataContext.get_current().enable_progress_bars = False
        print(f"local Ray started in {time.perf_counter() - start:.1f} s")
        warm = paths[: 2 * args.batch_size]
        timed(warm, None)[2].delete()  # first-call allocations, imports, schema

        results: dict[str, tuple[float, dict]] = {}
        seconds, probs, kept = timed(paths, None)
        results["process"] = (seconds, probs)
        print(f"process: {args.n} in {seconds:.1f} s = {args.n / seconds:.1f} samples/s; {_load()}")
        for k in args.actors:
            seconds, probs, ds = timed(paths, RayEngine(RaySettings(num_actors=k, cpus_per_actor=1, batch_size=args.batch_size)))
            ds.delete()
            results[f"ray-{k}"] = (seconds, probs)
            print(f"ray, {k} actor(s): {args.n} in {seconds:.1f} s = {args.n / seconds:.1f} samples/s; {_load()}")

        base = results["process"][0]
        for name, (seconds, probs) in results.items():
            diff = max(abs(probs[f] - results["process"][1][f]) for f in probs)
            print(f"{name:>8}: {args.n / seconds:7.1f} samples/s, {base / seconds:.2f}× the process path, max |Δp_roadwork| vs process {diff:.1e}")

        # The write side alone: the driver's staged bulk writes + promotion, no model.
        names = list(PREDICTION_FIELDS)
        ids, *columns = kept.values(["id", *names])
        run_field = f"{STAGING_RUN_FIELD}{store.STAGED_SUFFIX}"
        start = time.perf_counter()
        for lo in range(0, len(ids), 256):
            chunk = {name: dict(zip(ids[lo : lo + 256], col[lo : lo + 256], strict=True)) for name, col in zip(names, columns, strict=True)}
            _write_staged(kept, chunk, run_field, "bench")
        store.promote_staged(kept, names, run_field=run_field, run_id="bench")
        seconds = time.perf_counter() - start
        rate = len(ids) / seconds
        print(
            f"MongoDB writes: {len(ids)} samples × {len(names)} fields staged + promoted in {seconds:.2f} s = "
            f"{rate:.0f} samples/s ({rate * (len(names) + 1):.0f} field writes/s); {_load()}"
        )
        kept.delete()
        ray.shutdown()


if __name__ == "__main__":
    main()
