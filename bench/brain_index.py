"""Benchmark: the FiftyOne Brain similarity index and embeddings map on 100,000 random 384-d
embeddings, against brute-force numpy cosine top-k in the same run (issue 20).

    python bench/brain_index.py                       # 100,000 × 384, 50 queries, UMAP on all
    python bench/brain_index.py --n 20000 --map-n 5000 # quick check

On a private mongod (tests/mongod.py): inserts ``--n`` samples with no images and the vectors in
their ``stage1_embedding`` field (as `predict` stores them), then

1. index: ``fob.compute_similarity(embeddings="stage1_embedding", backend="sklearn",
   metric="cosine")`` (what ``curation brain`` builds: the index reads the field, it does not
   copy the vectors into its results), time and memory (tracemalloc peak of the build);
2. queries: ``index.sort_by_similarity(vector, k)`` → sample ids, per query, for ``--queries``
   random vectors; the numpy baseline normalises the matrix once and answers each query with one
   matrix-vector product and ``argpartition``; both answers are checked equal;
3. map: ``fob.compute_visualization(method="umap")`` on ``--map-n`` of the embeddings, time and
   peak RSS growth (numba compiles on the first call: that is part of a fresh machine's cost).

Prints the per-query ratio (Brain s ÷ numpy s): the index wins nothing over brute force at this
size (the sklearn backend is brute force too, plus the FiftyOne view); it exists for the App's
"sort by similarity" and for pointing the same code at a vector database.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/mongod.py: the private database


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def numpy_topk(unit: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` rows of ``unit`` (L2-normalised) most cosine-similar to ``query``, best first."""
    sims = unit @ (query / np.linalg.norm(query))
    top = np.argpartition(-sims, k)[:k]
    return top[np.argsort(-sims[top], kind="stable")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--map-n", type=int, default=100_000, help="embeddings in the UMAP map (0: skip)")
    args = parser.parse_args()

    from mongod import launch_private_mongod

    server = launch_private_mongod(prefix="bench-brain-mongo-")
    os.environ["FIFTYONE_DATABASE_URI"] = server.uri
    os.environ["FIFTYONE_DATABASE_NAME"] = "bench_brain"
    import fiftyone as fo
    import fiftyone.brain as fob

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    began = time.perf_counter()
    dataset = fo.Dataset("bench_brain")
    dataset.add_samples([fo.Sample(filepath=f"/bench/{i}.jpg", stage1_embedding=row.tolist()) for i, row in enumerate(x)], progress=False)
    ids = np.array(dataset.values("id"))
    print(f"{args.n:,} samples inserted in {time.perf_counter() - began:.1f} s; {args.n:,} × {args.dim} float32 = {x.nbytes / 2**20:.0f} MiB")

    tracemalloc.start()
    began = time.perf_counter()
    index = fob.compute_similarity(dataset, embeddings="stage1_embedding", backend="sklearn", metric="cosine", brain_key="bench", progress=False)
    build_s = time.perf_counter() - began
    build_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()

    began = time.perf_counter()
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    numpy_build_s = time.perf_counter() - began

    queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    brain_s, numpy_s, agree = 0.0, 0.0, 0
    for q in queries:
        began = time.perf_counter()
        brain_ids = index.sort_by_similarity(q, k=args.k).values("id")
        brain_s += time.perf_counter() - began
        began = time.perf_counter()
        numpy_ids = ids[numpy_topk(unit, q, args.k)].tolist()
        numpy_s += time.perf_counter() - began
        agree += brain_ids == numpy_ids
    per_brain, per_numpy = brain_s / args.queries, numpy_s / args.queries
    print(f"index build: Brain sklearn {build_s:.2f} s (traced peak {build_peak:.0f} MiB); numpy normalise {numpy_build_s:.2f} s ({unit.nbytes / 2**20:.0f} MiB)")
    print(f"top-{args.k} query: Brain {per_brain * 1e3:.1f} ms, numpy {per_numpy * 1e3:.2f} ms; "
          f"ratio Brain/numpy {per_brain / per_numpy:.1f}×; same ids in {agree} of {args.queries} queries")  # fmt: skip

    if args.map_n:
        view = dataset.limit(args.map_n)
        rss0, began = _rss_mib(), time.perf_counter()
        fob.compute_visualization(view, embeddings="stage1_embedding", method="umap", brain_key="bench_map", seed=0, progress=False)
        map_s = time.perf_counter() - began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"UMAP map of {args.map_n:,} × {args.dim}: {map_s:.1f} s, RSS {rss0:.0f} → peak {peak:.0f} MiB (process)")
    dataset.delete()
    server.stop()


if __name__ == "__main__":
    main()
