"""Benchmark: a full mining pass over 1,000,000 sample documents vs a naive per-sample loop.

    python bench/mining.py                                  # 1,000,000 docs, naive loop on 50,000
    python bench/mining.py --n 100000 --naive-n 5000        # quick check
    python bench/mining.py --profile mine.prof              # cProfile the mining pass

What it does, on a private mongod (started here, on a free port and a temporary directory):

1. inserts ``--n`` sample documents in FiftyOne's document shape (no images, no embeddings:
   placeholder filepath; split mix train/pool/val/calib/test; ``stage1`` Classification with
   label, confidence, logits and ``p_roadwork``; ``failure_risk``; ``gate_features`` with
   ``var``; ``ground_truth`` where the split is labeled; a few ``leak`` tags) straight through the
   dataset's pymongo collection (``insert_many``), timed on its own;
2. runs ``curation.mine.job.mine`` in a fresh child process and reports its wall time and the
   child's peak RSS (``ru_maxrss``), while this process samples mongod's RSS;
3. runs a naive baseline on ``--naive-n`` documents of the same mix in the same run: iterate the
   candidates with ``iter_samples``, compute each sample's terms in Python, rank-normalise in
   Python, then ``sample.save()`` per sample for the hardness and the day's tag; its hardness is
   checked against :func:`curation.stage1.hardness.hardness_scores` so both paths do the same work;
4. prints the per-sample speed ratio (naive s/sample ÷ ``mine`` s/sample).

Goal (issue 7): the mining pass within 60 s and under 4 GB peak memory on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import date, datetime
from pathlib import Path

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/mongod.py: the private database

DAY = date(2026, 11, 25)
SPLITS = np.array(["train", "pool", "val", "calib", "test"])
SPLIT_P = np.array([0.5, 0.25, 0.1, 0.05, 0.1])


# --- process statistics ------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc; less sensitive to load than wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Polls another process's RSS every 50 ms; ``peak`` is the largest value seen."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib(self.pid))
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- synthetic documents ------------------------------------------------------------------------


_NPY_HEADER = None


def _logits_bytes(p: float) -> bytes:
    """``[log(1 − p), log p]`` as FiftyOne stores a vector (zlib'd ``np.save``), without np.save per call."""
    global _NPY_HEADER
    import io
    import struct
    import zlib

    if _NPY_HEADER is None:
        with io.BytesIO() as f:
            np.save(f, np.zeros(2), allow_pickle=False)
            _NPY_HEADER = f.getvalue()[:-16]
    return zlib.compress(_NPY_HEADER + struct.pack("<2d", math.log1p(-p), math.log(p)))


def insert_documents(dataset, n: int, *, seed: int, batch: int = 20_000) -> float:
    """Insert ``n`` FiftyOne-shaped sample documents with prediction fields; returns seconds."""
    from bson import ObjectId

    coll = dataset._sample_collection
    dataset_id = dataset._doc.id
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for lo in range(0, n, batch):
        m = min(batch, n - lo)
        splits = rng.choice(SPLITS, size=m, p=SPLIT_P).tolist()
        ps = rng.uniform(1e-4, 1 - 1e-4, size=m).tolist()
        risks = rng.uniform(size=m).tolist()
        variances = rng.gamma(1.0, 0.02, size=m).tolist()
        truths = np.where(rng.uniform(size=m) < 0.8, "roadwork", "no_roadwork").tolist()
        leaks = (rng.uniform(size=m) < 0.001).tolist()
        now = datetime.utcnow()
        docs = []
        for i, (split, p, risk, var, truth, leak) in enumerate(zip(splits, ps, risks, variances, truths, leaks)):
            doc = {
                "_id": ObjectId(),
                "filepath": f"/bench/none/{lo + i:07d}.jpg",
                "tags": ["leak"] if leak else [],
                "_media_type": "image",
                "_rand": 0.25 + 0.5 * risk,
                "split": split,
                "stage1": {"_id": ObjectId(), "_cls": "Classification", "tags": [],
                           "label": "roadwork" if p >= 0.5 else "no_roadwork",
                           "confidence": max(p, 1 - p), "logits": _logits_bytes(p), "p_roadwork": p},
                "failure_risk": risk,
                "gate_features": {"p": p, "var": var},
                "model_version": "0.0.0",
                "_dataset_id": dataset_id,
                "created_at": now,
                "last_modified_at": now,
            }
            if split != "pool":  # pool images are unlabeled
                doc["ground_truth"] = {"_id": ObjectId(), "_cls": "Classification", "tags": [], "label": truth}
            docs.append(doc)
        coll.insert_many(docs, ordered=False)
    return time.perf_counter() - start


def make_dataset(name: str, n: int, *, seed: int) -> tuple[object, float]:
    import fiftyone as fo

    from curation import store

    dataset = fo.Dataset(name)
    store.declare_schema(dataset)
    seconds = insert_documents(dataset, n, seed=seed)
    assert len(dataset) == n, (len(dataset), n)
    return dataset, seconds


# --- the naive baseline -------------------------------------------------------------------------


def _py_rank_normalize(values: list[float]) -> list[float]:
    """Average-tie ranks mapped to [0, 1], in plain Python (one value maps to 0.5)."""
    n = len(values)
    if n <= 1:
        return [0.5] * n
    order = sorted(range(n), key=values.__getitem__)
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0  # 0-based average rank
        for t in range(i, j + 1):
            ranks[order[t]] = avg / (n - 1)
        i = j + 1
    return ranks


def naive_mine(dataset, *, quota: int, min_hardness: float, weights) -> dict:
    """Per-sample Python loop: read, score and save one sample at a time (same result as mine)."""
    from curation.mine.job import candidates

    tag = f"hard:{DAY.isoformat()}"
    w = weights.as_dict()
    start = time.perf_counter()
    samples, terms = [], {"entropy": [], "failure_risk": [], "view_disagreement": [], "mistakenness": []}
    for sample in candidates(dataset).iter_samples():
        p = min(max(float(sample.stage1.p_roadwork), 1e-7), 1 - 1e-7)
        entropy = -(p * math.log(p) + (1 - p) * math.log1p(-p))
        gt = sample.ground_truth
        if gt is None:
            mistaken = None
        else:
            right = (p >= 0.5) == (gt.label == "roadwork")
            mistaken = ((-1.0 if right else 1.0) * math.exp(-entropy) + 1.0) / 2.0
        samples.append(sample)
        terms["entropy"].append(entropy)
        terms["failure_risk"].append(sample.failure_risk)
        terms["view_disagreement"].append((sample.gate_features or {}).get("var"))
        terms["mistakenness"].append(mistaken)
    n = len(samples)
    total, wsum = [0.0] * n, [0.0] * n
    for name, column in terms.items():
        present = [i for i, v in enumerate(column) if v is not None]
        for i, r in zip(present, _py_rank_normalize([column[i] for i in present])):
            total[i] += w[name] * r
            wsum[i] += w[name]
    hardness = [t / s for t, s in zip(total, wsum)]
    for sample, h in zip(samples, hardness):
        sample["hardness"] = h
        sample.save()
    passed = sorted((i for i in range(n) if hardness[i] >= min_hardness), key=lambda i: -hardness[i])
    for i in passed[:quota]:
        samples[i].tags.append(tag)
        samples[i].save()
    return {"seconds": time.perf_counter() - start, "n_candidates": n, "n_passed": len(passed),
            "n_selected": min(quota, len(passed))}


def check_naive(dataset, weights) -> float:
    """Largest |naive − hardness_scores| over the naive dataset's candidates (should be ~1e-12)."""
    from fiftyone import ViewField as F

    from curation.mine.job import _floats
    from curation.stage1.hardness import hardness_scores

    # candidates() now leaves the tagged batch out: read every train/pool non-leak sample instead
    view = dataset.match(F("split").is_in(["train", "pool"])).match_tags("leak", bool=False).exists("stage1")
    p, risk, var, truth, h = view.values(
        ["stage1.p_roadwork", "failure_risk", "gate_features.var", "ground_truth.label", "hardness"]
    )
    t = np.array([np.nan if x is None else float(x == "roadwork") for x in truth])
    expected = hardness_scores(_floats(p), _floats(risk), _floats(var), t, weights=weights)
    return float(np.max(np.abs(expected - np.array(h, dtype=float))))


# --- the mining pass in a fresh process --------------------------------------------------------


def child_mine(name: str, profile: str | None) -> None:
    import fiftyone as fo

    from curation.mine.job import MiningConfig, mine

    dataset = fo.load_dataset(name)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    start, cpu = time.perf_counter(), time.process_time()
    report = mine(dataset, day=DAY, config=MiningConfig())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if profile:
        prof.disable()
        prof.dump_stats(profile)
    out = {
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mib": rss_before,
        "n_candidates": report.n_candidates,
        "n_passed": report.n_passed,
        "n_selected": len(report.selected_ids),
    }
    print("RESULT " + json.dumps(out))


def _load() -> str:
    return "load average %.2f, %.2f, %.2f" % os.getloadavg()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="documents for the mining pass")
    parser.add_argument("--naive-n", type=int, default=50_000, help="documents for the naive per-sample loop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mongod-cache-gb", type=float, default=1.0,
                        help="WiredTiger cache of the private mongod (0: mongod's default, ~half the RAM)")
    parser.add_argument("--profile", help="write a cProfile of the mining pass to this file")
    parser.add_argument("--child-mine", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_mine:
        child_mine(args.child_mine, args.profile)
        return

    from mongod import launch_private_mongod  # tests/mongod.py

    cache = ["--wiredTigerCacheSizeGB", str(args.mongod_cache_gb)] if args.mongod_cache_gb > 0 else []
    server = launch_private_mongod(extra_args=cache, prefix="bench-mining-mongo-")
    proc, uri = server.proc, server.uri
    os.environ["FIFTYONE_DATABASE_URI"] = uri
    os.environ["FIFTYONE_DATABASE_NAME"] = "bench_mining"
    try:
        import fiftyone as fo  # noqa: F401  (reads the URI now)

        from curation.mine.job import MiningConfig

        print(f"mongod pid {proc.pid} at {uri}, WiredTiger cache "
              f"{args.mongod_cache_gb if args.mongod_cache_gb > 0 else 'default'} GB; {_load()}")
        dataset, insert_s = make_dataset("bench_mining_full", args.n, seed=args.seed)
        print(f"insert: {args.n:,} docs in {insert_s:.1f} s ({args.n / insert_s:,.0f} docs/s); "
              f"mongod RSS {_rss_mib(proc.pid):.0f} MiB; {_load()}")

        mongod_cpu = _cpu_s(proc.pid)
        with RssSampler(proc.pid) as mongod_rss:
            child = subprocess.run(
                [sys.executable, __file__, "--child-mine", "bench_mining_full", *(["--profile", args.profile] if args.profile else [])],
                capture_output=True, text=True, env=os.environ.copy(),
            )
        mongod_cpu = _cpu_s(proc.pid) - mongod_cpu  # includes the child's imports (~0 for mongod)
        lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode or not lines:
            sys.exit(f"mining child failed ({child.returncode}):\n{child.stdout}\n{child.stderr}")
        fast = json.loads(lines[0][len("RESULT "):])
        print(f"mine: {args.n:,} docs ({fast['n_candidates']:,} candidates, {fast['n_passed']:,} ≥ 0.7, "
              f"{fast['n_selected']} tagged) in {fast['seconds']:.2f} s; Python peak RSS {fast['peak_rss_mib']:.0f} MiB "
              f"(after imports {fast['rss_before_mib']:.0f} MiB); mongod peak RSS {mongod_rss.peak:.0f} MiB; "
              f"CPU: Python {fast['cpu_s']:.1f} s + mongod {mongod_cpu:.1f} s; {_load()}")
        goal_ok = fast["seconds"] <= 60 and fast["peak_rss_mib"] < 4096
        print(f"goal (≤ 60 s, < 4 GB Python peak): {'met' if goal_ok else 'MISSED'}")
        dataset.delete()

        naive_ds, naive_insert_s = make_dataset("bench_mining_naive", args.naive_n, seed=args.seed + 1)
        cfg = MiningConfig()
        naive = naive_mine(naive_ds, quota=cfg.quota, min_hardness=cfg.min_hardness, weights=cfg.weights)
        err = check_naive(naive_ds, cfg.weights)
        print(f"naive: {args.naive_n:,} docs ({naive['n_candidates']:,} candidates, {naive['n_passed']:,} ≥ 0.7) "
              f"in {naive['seconds']:.1f} s; max |naive − hardness_scores| = {err:.1e}; {_load()}")
        naive_ds.delete()

        fast_per = fast["seconds"] / args.n
        naive_per = naive["seconds"] / args.naive_n
        print(f"per sample: mine {fast_per * 1e6:.1f} µs, naive {naive_per * 1e6:.1f} µs → "
              f"mine is {naive_per / fast_per:.1f}× faster per sample "
              f"(naive extrapolated to {args.n:,}: {naive_per * args.n:.0f} s)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
