"""Write the demo corpus: every source in its real format, leakage fixtures, and the hidden truth.

Layout under ``OUT/``::

    natix/data/train-0000{0,1}-of-00002.parquet   dotted columns, list tags as strings
    natix/data/test-00000-of-00001.parquet        nested structs
    roadwork/images/*.jpg, roadwork/annotations/instances_{train,val}_gps_split.json
    roboflow/coco/{train,valid,test}/_annotations.coco.json + images
    roboflow/yolo/data.yaml, roboflow/yolo/{train,valid}/{images,labels}   (test listed, absent)
    roboflow/cls/{train,valid}/{roadwork,no_roadwork}/*.jpg
    queries/images/<sha256>.jpg, queries/log.jsonl
    truth.csv      path, source, is_roadwork, kind, hn_category, text, sha256, roadwork_boxes for every image
    manifest.json  the spec, counts, paths and the leakage fixtures

``truth.csv`` is the answer key for the demo's scripted labeler and evaluation; importers must not
read it. NATIX rows have no file of their own: their truth path is ``<parquet file>#<id>``.

Example:
    >>> manifest = write_corpus("/tmp/demo", CorpusSpec(n_natix_train=40, n_natix_test=12))  # doctest: +SKIP
    >>> manifest.paths["natix"]  # doctest: +SKIP
    PosixPath('/tmp/demo/natix')
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from curation.demo import natix_format, query_log, roadwork_format, roboflow_format
from curation.demo.natix_format import NatixRow
from curation.demo.roadwork_format import RoadworkImage
from curation.demo.roboflow_format import RoboflowImage
from curation.demo.scene import ROADWORK_PRIMITIVES, Frame, kinds_for, render_scene, sample_spec, view
from curation.demo.sequences import SequencePlan, Shot, description, encode_jpeg, pick_kind, plan_sequence, shoot, travel_alteration
from curation.errors import ConfigError, InputError

ROBOFLOW_SIZE = (416, 416)
TRUTH_COLUMNS = ("path", "source", "is_roadwork", "kind", "hn_category", "text", "sha256", "roadwork_boxes")
_OWNED = ("natix", "roadwork", "roboflow", "queries", "truth.csv", "manifest.json")


@dataclass(frozen=True)
class CorpusSpec:
    """How many images each source gets, and the seed that fixes every byte.

    Queries default to the validators' mix (half roadwork, most negatives orange look-alikes);
    ``query_positive`` and ``query_look_alike`` (share of negatives that are look-alikes) model a
    dashcam stream instead, where roadwork is rare and most negatives are plain streets.
    """

    n_natix_train: int = 240
    n_natix_test: int = 80
    n_roadwork: int = 80
    n_roboflow: int = 30
    n_queries: int = 20
    seed: int = 0
    natix_train_positive: float = 0.8
    query_positive: float = 0.5
    query_look_alike: float | None = None
    frames_per_sequence: tuple[int, int] = (3, 5)

    def __post_init__(self) -> None:
        for name in ("n_natix_train", "n_natix_test", "n_roadwork", "n_roboflow", "n_queries"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"The `{name}` parameter of CorpusSpec must be an int in the range [0, inf). Got {value!r} instead.")
        for name in ("natix_train_positive", "query_positive", "query_look_alike"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"The `{name}` parameter must be a float in [0, 1]. Got {value!r} instead.")
        lo, hi = self.frames_per_sequence
        if not 1 <= lo <= hi:
            raise ConfigError(f"The `frames_per_sequence` parameter must be (lo, hi) with 1 <= lo <= hi. Got {self.frames_per_sequence!r} instead.")


@dataclass(frozen=True)
class Manifest:
    """What was written: image count, the folder of each source, and the leakage fixtures."""

    root: Path
    spec: CorpusSpec
    n_images: int
    paths: dict[str, Path]
    counts: dict[str, int] = field(default_factory=dict)
    fixtures: dict[str, list[dict]] = field(default_factory=dict)


@dataclass(frozen=True)
class TruthRow:
    path: str
    source: str
    frame: Frame
    sha256: str

    def as_csv(self) -> list[str]:
        spec = self.frame.spec
        hn = spec.hn_category if not self.frame.is_roadwork else ""
        return [self.path, self.source, str(int(self.frame.is_roadwork)), spec.kind, hn, self.frame.text, self.sha256, self.roadwork_boxes()]

    def roadwork_boxes(self) -> str:
        """JSON list of the roadwork primitives' boxes, relative ``[x0, y0, x1, y1]`` (the evidence a crop may cut)."""
        width, height = self.frame.image.size
        boxes = [
            [round(b.x0 / width, 5), round(b.y0 / height, 5), round(b.x1 / width, 5), round(b.y1 / height, 5)]
            for b in self.frame.boxes
            if b.label in ROADWORK_PRIMITIVES
        ]
        return json.dumps(boxes, separators=(",", ":"))


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per purpose, so adding images to one source keeps the others."""
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")])


class _Videos:
    """Allocates (vid_id, seq_id): some videos hold two sequences, as in the real data."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.n, self.seq = rng, 0, 0

    def next(self) -> tuple[str, str]:
        if self.n and self.seq == 0 and self.rng.random() < 0.3:
            self.seq = 1
        else:
            self.n, self.seq = self.n + 1, 0
        return f"vid_{self.n:05d}", str(self.seq)


def _plan_rows(n: int, share: float, spec: CorpusSpec, rng: np.random.Generator, videos: _Videos) -> list[tuple[SequencePlan, int]]:
    """Sequences covering ``n`` frames, choosing each sequence's label to keep the positive share."""
    plans, rows, pos = [], 0, 0
    while rows < n:
        nf = min(int(rng.integers(spec.frames_per_sequence[0], spec.frames_per_sequence[1] + 1)), n - rows)
        positive = abs((pos + nf) / (rows + nf) - share) <= abs(pos / (rows + nf) - share)
        seed = int(rng.integers(2**31))
        plans.append((plan_sequence(rng, pick_kind(rng, positive), seed, *videos.next()), nf))
        rows, pos = rows + nf, pos + nf * positive
    return plans


def _natix_rows(plans: list[tuple[SequencePlan, int]], first_id: int, rng: np.random.Generator) -> list[NatixRow]:
    rows = []
    for plan, nf in plans:
        scene = render_scene(plan.spec)
        for k in range(nf):
            shot = shoot(plan, scene, k)
            label = int(shot.frame.is_roadwork)
            said = plan.spec if label else replace(plan.spec, kind="plain")  # evidence may leave the view
            rows.append(NatixRow(first_id + len(rows), natix_format.light_shot(shot), label, description(said, rng), travel_alteration(said, shot.frame.text)))
    return rows


def _add_conflicts(rows: list[NatixRow], rng: np.random.Generator) -> tuple[list[NatixRow], list[dict]]:
    """Make 3 rows whose label disagrees with an empty/non-empty description (validators skip these)."""
    pos = [i for i, r in enumerate(rows) if r.label == 1]
    neg = [i for i, r in enumerate(rows) if r.label == 0]
    if len(rows) < 10 or len(pos) < 2 or not neg:
        return rows, []
    a, b = (int(i) for i in rng.choice(pos, 2, replace=False))
    c = int(rng.choice(neg))
    out = list(rows)
    out[a] = replace(rows[a], description="")  # label 1, no description
    out[b] = replace(rows[b], label=0)  # label 0, roadwork description
    out[c] = replace(rows[c], description="Road work ahead, right lane closed.")  # label 0, roadwork text
    notes = ("label 1 with an empty description", "label 0 with a roadwork description (label wrong)", "label 0 with a roadwork description (description wrong)")
    return out, [{"natix_id": out[i].id, "case": note} for i, note in zip((a, b, c), notes)]


def _roadwork_fixtures(train: list[NatixRow], test: list[NatixRow], conflicts: list[dict], videos: _Videos, spec: CorpusSpec, rng: np.random.Generator) -> tuple[list[RoadworkImage], dict[str, list[dict]]]:
    """ROADWork frames that leak NATIX: shared sequences, byte-identical copies, near-duplicates."""
    budget = min(12, spec.n_roadwork // 2)
    seqs_of = lambda rows: list({(r.shot.plan.vid_id, r.shot.plan.seq_id): r for r in rows}.values())  # noqa: E731
    conflicted = {c["natix_id"] for c in conflicts}
    pools = {
        "shared_test": seqs_of(test)[1::2],
        "byte_identical": [r for r in train if r.id not in conflicted][len(train) // 3 :: 5],
        "near_duplicate": test[2::2],
        "shared_train": seqs_of(train)[1::2],
    }
    # One of each first, then the single-image fixtures, so a small budget still covers every case.
    order = (("shared_test", "byte_identical", "near_duplicate", "shared_train"), ("byte_identical", "near_duplicate", "shared_test", "shared_train"))
    steps = [(kind, pools[kind][i]) for i in range(2) for kind in order[i] if len(pools[kind]) > i]
    images: list[RoadworkImage] = []
    fixtures: dict[str, list[dict]] = {"shared_sequences": [], "byte_identical": [], "near_duplicates": []}
    for kind, row in steps:
        plan = row.shot.plan
        assert plan is not None
        if kind.startswith("shared"):
            if len(images) + 2 > budget:
                continue
            scene = render_scene(plan.spec)
            n_used = max(r.shot.k for r in (test if kind == "shared_test" else train) if r.shot.plan is plan) + 1
            names = []
            for k in (n_used, n_used + 1):
                shot = shoot(plan, scene, k)
                images.append(_rw_image(len(images) + 1, shot, rng))
                names.append(images[-1].file_name)
            fixtures["shared_sequences"].append({"vid_id": plan.vid_id, "seq_id": plan.seq_id, "natix_split": kind.removeprefix("shared_"), "roadwork_files": names})
        elif len(images) + 1 > budget:
            continue
        elif kind == "byte_identical":
            images.append(RoadworkImage(len(images) + 1, _file_name(row.shot), row.shot, row.description, row.travel_alteration))
            fixtures["byte_identical"].append({"natix_id": row.id, "roadwork_file": images[-1].file_name})
        else:
            vid, seq = videos.next()
            twin = replace(plan, vid_id=vid, seq_id=seq)
            shifted = len(fixtures["near_duplicates"]) % 2 == 1
            step = 1 if plan.offset(row.shot.k)[0] < plan.spec.margin else -1  # a shift the margin allows
            shot = shoot(twin, render_scene(plan.spec), row.shot.k, quality=90 if shifted else 70, shift=(step, 0) if shifted else (0, 0))
            images.append(_rw_image(len(images) + 1, shot, rng))
            fixtures["near_duplicates"].append({"natix_id": row.id, "roadwork_file": images[-1].file_name, "transform": "shift_1px" if shifted else "jpeg_quality_70"})
    return images, fixtures


def _file_name(shot: Shot) -> str:
    assert shot.plan is not None
    return f"{shot.plan.vid_id}_{shot.plan.seq_id}_{shot.frame_id}.jpg"


def _rw_image(image_id: int, shot: Shot, rng: np.random.Generator) -> RoadworkImage:
    spec = shot.frame.spec if shot.frame.is_roadwork else replace(shot.frame.spec, kind="plain")
    return RoadworkImage(image_id, _file_name(shot), shot, description(spec, rng), travel_alteration(spec, shot.frame.text))


def _roadwork(train: list[NatixRow], test: list[NatixRow], conflicts: list[dict], videos: _Videos, spec: CorpusSpec) -> tuple[dict[str, list[RoadworkImage]], dict[str, list[dict]]]:
    rng = _stream(spec.seed, "roadwork")
    fixtures_imgs, fixtures = _roadwork_fixtures(train, test, conflicts, videos, spec, rng)
    splits: dict[str, list[RoadworkImage]] = {"train": list(fixtures_imgs), "val": []}
    n_id = len(fixtures_imgs)
    for i, (plan, nf) in enumerate(_plan_rows(spec.n_roadwork - n_id, 0.85, spec, rng, videos)):
        scene = render_scene(plan.spec)
        for k in range(nf):
            n_id += 1
            splits["val" if i % 4 == 3 else "train"].append(_rw_image(n_id, shoot(plan, scene, k), rng))
    return splits, fixtures


def _single_frames(
    n: int, share: float, seed: int, stream: str, size: tuple[int, int], classes: frozenset[str] | None, look_alike: float | None = None
) -> list[Frame]:
    """Frames of independent scenes (Roboflow, queries), ``share`` of them positive; ``look_alike``
    fixes the share of negatives that are orange look-alikes (None: the corpus's kind weights)."""
    rng = _stream(seed, stream)
    positives, negatives = kinds_for(classes)
    n_pos = round(share * n)
    frames = []
    for i in range(n):
        kind = pick_kind(rng, i < n_pos, positives + negatives, look_alike)
        frames.append(view(render_scene(sample_spec(kind, int(rng.integers(2**31)), size=size, classes=classes))))
    order = rng.permutation(n)
    return [frames[i] for i in order]


def _splits(items: list, fractions: dict[str, float]) -> dict[str, list]:
    out, start = {}, 0
    names = list(fractions)
    for j, name in enumerate(names):
        end = len(items) if j == len(names) - 1 else start + round(fractions[name] * len(items))
        out[name], start = items[start:end], end
    return out


def _prepare(out: Path) -> None:
    """Refuse to write into an unrelated non-empty folder; replace an older demo corpus."""
    if out.exists() and any(out.iterdir()):
        if not (out / "manifest.json").exists():
            raise InputError(f"`{out}` is not empty and holds no demo corpus (no manifest.json). Choose an empty or new folder.")
        for name in _OWNED:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def write_corpus(out_dir: Path | str, spec: CorpusSpec = CorpusSpec()) -> Manifest:
    """Write the whole demo corpus under ``out_dir``; the same spec always gives the same bytes."""
    out = Path(out_dir)
    _prepare(out)
    truth: list[TruthRow] = []
    videos = _Videos(_stream(spec.seed, "videos"))

    rng = _stream(spec.seed, "natix")
    train_plans = _plan_rows(spec.n_natix_train, spec.natix_train_positive, spec, rng, videos)
    test_plans = _plan_rows(spec.n_natix_test, 0.5, spec, rng, videos)
    train, conflicts = _add_conflicts(_natix_rows(train_plans, 1, rng), rng)
    test = _natix_rows(test_plans, len(train) + 1, rng)
    for path, rows in natix_format.write_natix(out / "natix", train, test):
        rel = path.relative_to(out).as_posix()
        truth += [TruthRow(f"{rel}#{r.id}", "natix", r.shot.frame, r.shot.sha256) for r in rows]

    rw_splits, fixtures = _roadwork(train, test, conflicts, videos, spec)
    roadwork_format.write_roadwork(out / "roadwork", rw_splits, spec.seed)
    truth += [TruthRow(f"roadwork/images/{i.file_name}", "roadwork", i.shot.frame, i.shot.sha256) for imgs in rw_splits.values() for i in imgs]
    fixtures["label_conflicts"] = conflicts

    classes = frozenset(roboflow_format.UNIFIED_TO_ROBOFLOW)
    det = [RoboflowImage(i, Shot(encode_jpeg(f.image), f)) for i, f in enumerate(_single_frames(spec.n_roboflow, 0.85, spec.seed, "roboflow_det", ROBOFLOW_SIZE, classes))]
    det_splits = _splits(det, {"train": 0.7, "valid": 0.2, "test": 0.1})
    cls = [RoboflowImage(spec.n_roboflow + i, Shot(encode_jpeg(f.image), f)) for i, f in enumerate(_single_frames(spec.n_roboflow, 0.5, spec.seed, "roboflow_cls", ROBOFLOW_SIZE, None))]
    written = [("roboflow", p, img) for p, img in roboflow_format.write_coco(out / "roboflow" / "coco", det_splits)]
    written += [("roboflow", p, img) for p, img in roboflow_format.write_yolo(out / "roboflow" / "yolo", {k: det_splits[k] for k in ("train", "valid")})]
    written += [("roboflow", p, img) for p, img in roboflow_format.write_cls(out / "roboflow" / "cls", _splits(cls, {"train": 0.8, "valid": 0.2}))]
    frames = _single_frames(spec.n_queries, spec.query_positive, spec.seed, "queries", (640, 360), None, spec.query_look_alike)
    written += [("queries", p, rec) for p, rec in query_log.write_queries(out / "queries", query_log.make_records(frames, _stream(spec.seed, "query_log")))]
    truth += [TruthRow(p.relative_to(out).as_posix(), source, item.shot.frame, item.shot.sha256) for source, p, item in written]

    with (out / "truth.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        writer.writerows(row.as_csv() for row in truth)

    paths = {
        "natix": out / "natix",
        "roadwork": out / "roadwork",
        "roboflow_coco": out / "roboflow" / "coco",
        "roboflow_yolo": out / "roboflow" / "yolo",
        "roboflow_cls": out / "roboflow" / "cls",
        "queries": out / "queries",
        "truth": out / "truth.csv",
    }
    counts = {source: sum(1 for r in truth if r.source == source) for source in ("natix", "roadwork", "roboflow", "queries")}
    counts["positives"] = sum(1 for r in truth if r.frame.is_roadwork)
    manifest = Manifest(out, spec, len(truth), paths, counts, fixtures)
    (out / "manifest.json").write_text(json.dumps({"spec": asdict(spec), "n_images": manifest.n_images, "counts": counts, "paths": {k: p.relative_to(out).as_posix() for k, p in paths.items()}, "fixtures": fixtures}, indent=2) + "\n")
    return manifest
