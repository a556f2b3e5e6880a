"""Fault matrix: kill -9 ingest, predict, mine and retrain at several points; the re-run must reach
the clean run's state at once (no waiting for a lock to expire).

For each job, a clean run (after the job's prerequisites, in a fresh dataset and home) gives the
reference state and the job's duration D. Then, for each kill point f, a fresh dataset and home
get the same prerequisites, the job is started as a CLI process in its own process group and
killed with SIGKILL at share f of its work (O + f·(D − O), O the start-up a command needs to
import and connect, at most 0.6·D), and the same command runs again. The cell passes when the
re-run exits 0, takes no longer than ``--rerun-limit``·D (a lock that had to expire would take
an hour or more) and leaves the reference state:

    ingest   samples by content hash with split and tags (leak tags included), no
             `leak_unchecked` tag, no temporary files in the media store
    predict  stage-1 probability and model version per content hash, no staged values or fields
    mine     the day's batch by content hash
    retrain  registered versions and the champion (the run resumes by --run-name)
    all      no lock left in the database

Everything runs on a private mongod (tests/mongod.py) and a temporary folder; nothing of the
user's is touched. CPU only; about 10 minutes on 2 cores with the defaults.

    .venv/bin/python bench/fault_matrix.py [--points 0.3 0.6 0.9] [--jobs ingest predict mine retrain] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/mongod.py: the private database

DAY = "2026-12-01"
RETRAIN_YAML = """job: retrain_export
backbone: tiny-random
head_train: {mode: head, epochs: 2, batch_size: 256, lr: 0.005, augmentations: 1}
promotion: {bootstrap: 100, min_slice_n: 5}
export: false
"""


def job_commands(corpus: Path, pipeline: Path) -> dict[str, list[str]]:
    return {
        "ingest": ["ingest", "all", str(corpus)],
        "predict": ["predict", "--model", "tiny-random", "--batch-size", "8"],
        "mine": ["mine", "--quota", "10", "--min-hardness", "0", "--day", DAY],
        "retrain": ["retrain", "--pipeline", str(pipeline), "--run-name", "fault-matrix"],
    }


PREREQUISITES = {"ingest": [], "predict": ["ingest"], "mine": ["ingest", "predict"], "retrain": ["ingest"]}


class Cell:
    """One fresh dataset + home: runs CLI commands against it and reads its state."""

    def __init__(self, work: Path, base_env: dict[str, str]) -> None:
        self.name = f"fm_{uuid.uuid4().hex[:8]}"
        self.home = work / self.name
        self.env = {**base_env, "CURATION_DATASET_NAME": self.name, "CURATION_HOME": str(self.home), "COLUMNS": "200"}

    def start(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", "from curation.cli import main; main()", *args], env=self.env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )

    def run(self, args: list[str], timeout_s: float = 1200) -> tuple[int, float, str]:
        t0 = time.monotonic()
        proc = self.start(args)
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, time.monotonic() - t0, out

    def state(self, job: str) -> dict[str, Any]:
        import fiftyone as fo

        from curation import schema, store
        from curation.settings import Settings
        from curation.store import registry

        ds = fo.load_dataset(self.name)
        ds.reload()
        hashes = ds.values("content_hash")
        out: dict[str, Any] = {"locks": [d["name"] for d in store.list_locks()]}
        if job == "ingest":
            rows = zip(hashes, ds.values("split"), ds.values("tags"), strict=True)
            out["samples"] = sorted([h, s, sorted(t or [])] for h, s, t in rows)
            out["leak_unchecked"] = ds.match_tags(schema.TAG_LEAK_UNCHECKED).count()
            out["tmp_files"] = len(list((self.home / "media").glob("*/.tmp-*")))
        elif job == "predict":
            probs = ds.values("stage1.p_roadwork")
            versions = ds.values("model_version")
            out["predictions"] = sorted([h, None if p is None else round(p, 5), v] for h, p, v in zip(hashes, probs, versions, strict=True))
            out["staged_fields"] = sorted(f for f in ds.get_field_schema() if f.endswith(store.STAGED_SUFFIX))
        elif job == "mine":
            out["batch"] = sorted(ds.match_tags(f"hard:{DAY}").values("content_hash"))
        elif job == "retrain":
            settings = Settings.load(env={"CURATION_HOME": str(self.home)})
            out["versions"] = registry.list_versions(settings)
            out["champion"] = registry.champion_version(settings)
        return out


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group this bench started (the CLI and anything it forked)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def differences(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    return [f"{key}: expected {str(expected[key])[:120]} got {str(found.get(key))[:120]}" for key in expected if found.get(key) != expected[key]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="+", default=["ingest", "predict", "mine", "retrain"])
    parser.add_argument("--points", nargs="+", type=float, default=[0.3, 0.6, 0.9], help="kill after this share of the clean run's time")
    parser.add_argument("--rerun-limit", type=float, default=3.0, help="a re-run may take at most this many clean-run durations")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    from mongod import launch_private_mongod  # tests/mongod.py

    server = launch_private_mongod(prefix="curation-fault-matrix-")
    os.environ["FIFTYONE_DATABASE_URI"] = server.uri
    os.environ["FIFTYONE_DATABASE_NAME"] = f"fault_matrix_{os.getpid()}"
    base_env = {**os.environ, "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    from curation import store
    from curation.demo.corpus import CorpusSpec, write_corpus
    from curation.settings import Settings

    store.connect(Settings.load(env={}))
    work = Path(tempfile.mkdtemp(prefix="curation-fault-matrix-"))
    corpus = work / "corpus"
    write_corpus(corpus, CorpusSpec(n_natix_train=120, n_natix_test=20, n_roadwork=30, n_roboflow=6, n_queries=6, seed=11))
    pipeline = work / "retrain.yaml"
    pipeline.write_text(RETRAIN_YAML)
    commands = job_commands(corpus, pipeline)

    def prepared(job: str) -> Cell:
        cell = Cell(work, base_env)
        for step in PREREQUISITES[job]:
            rc, _, out = cell.run(commands[step])
            if rc != 0:
                raise SystemExit(f"prerequisite {step} for {job} failed ({rc}):\n{out[-2000:]}")
        return cell

    results: list[dict[str, Any]] = []
    failed = 0
    # Kill points are shares of the work, after the start-up every command pays (imports, connecting).
    startup = min(Cell(work, base_env).run(["locks"])[1] for _ in range(2))
    try:
        for job in args.jobs:
            clean = prepared(job)
            rc, duration, out = clean.run(commands[job])
            if rc != 0:
                raise SystemExit(f"clean {job} failed ({rc}):\n{out[-2000:]}")
            expected = clean.state(job)
            print(f"{job}: clean run {duration:.1f} s (start-up {startup:.1f} s)", flush=True)
            for point in args.points:
                cell = prepared(job)
                proc = cell.start(commands[job])
                offset = min(startup, 0.6 * duration)  # a short job (mining) is mostly start-up: kill inside its tail
                kill_after = offset + point * (duration - offset)
                time.sleep(kill_after)
                finished_first = proc.poll() is not None
                kill_group(proc)
                rc, rerun_s, out = cell.run(commands[job])
                problems = differences(expected, cell.state(job)) if rc == 0 else [f"re-run exit {rc}: {out[-600:]}"]
                if rc == 0 and rerun_s > args.rerun_limit * duration:
                    problems.append(f"re-run took {rerun_s:.1f} s > {args.rerun_limit}×{duration:.1f} s (waited for a lock?)")
                ok = not problems
                failed += not ok
                row = {"job": job, "kill_at": point, "killed_after_s": round(kill_after, 1), "finished_before_kill": finished_first,
                       "rerun_s": round(rerun_s, 1), "ok": ok, "problems": problems}
                results.append(row)
                print(f"  kill -9 at {point:.0%} of the work ({row['killed_after_s']} s{', it had finished' if finished_first else ''}): re-run {rerun_s:.1f} s — "
                      + ("clean state" if ok else "; ".join(problems)), flush=True)
    finally:
        server.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(f"{len(results) - failed}/{len(results)} cells reach the clean run's state")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
