"""Feature cache: backbone outputs for M seeded validator queries per image, in bulk shards on disk.

Retraining a head must not cost a backbone forward per image, so per-view features are kept keyed
by ``(content hash, augmentation seed)`` inside a *namespace* fixed by the rest of the key — view
policy, backbone id (weights hash), compute dtype, storage dtype, validator level, JPEG quality.
Layout::

    <root>/<namespace>/index.json               spec, and per shard: size, sha256, keys
    <root>/<namespace>/shard-<sha>.safetensors  features [n, V, 2D] (storage dtype), stats [n, V, 4]

A shard is written under a temporary name and renamed before the index (rewritten atomically)
points at it, so a killed writer leaves an orphan file, never a half-indexed shard. On open, a
shard whose file is missing or has the wrong size is dropped; on read, a shard whose sha256
differs is dropped; either way its keys are simply missing again and :func:`cache_features`
recomputes them. One writer at a time (under DDP, rank 0 fills the cache, then the others read).

Example:
    >>> import tempfile
    >>> from curation.stage1.model import Stage1Config, Stage1Model
    >>> from curation.stage1.cache import CacheSpec, FeatureCache
    >>> model = Stage1Model.build(Stage1Config(backbone="tiny-random"))
    >>> cache = FeatureCache(tempfile.mkdtemp(), CacheSpec.for_model(model))
    >>> len(cache.missing([("ab" * 32, 7), ("ab" * 32, 7)]))
    1
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from curation.errors import ConfigError, InputError
from curation.stage1.backbone import DTYPES
from curation.stage1.head_fast import STATS_WIDTH, view_stats
from curation.stage1.training_data import augmentation_seed
from curation.stage1.views import ViewPolicy

log = logging.getLogger(__name__)

FORMAT = "curation.stage1.feature_cache/1"
INDEX = "index.json"
Key = tuple[str, int]  # (content hash, augmentation seed)


@dataclass(frozen=True)
class CacheSpec:
    """Everything except (content hash, seed) that decides a cached feature's value.

    Attributes:
        backbone_id: which weights made the features (see :func:`backbone_id`).
        views: the view policy the features were cut with.
        hidden_size: backbone width D (features are 2·D).
        dtype: storage dtype of the features (``float16`` halves the disk and RAM).
        compute_dtype: dtype of the backbone forward.
        validator_level: augmentation level forced on the queries, None = drawn like validators.
        jpeg_quality: JPEG quality of the validator round trip.
        query_policy: the StreetVision contract the queries follow (``models/streetvision/policies``);
            None = the platform's own model of the 2025-11 contract. Part of the cache key.
    """

    backbone_id: str
    views: ViewPolicy
    hidden_size: int
    dtype: str = "float16"
    compute_dtype: str = "float32"
    validator_level: int | None = None
    jpeg_quality: int = 75
    query_policy: str | None = None

    def __post_init__(self) -> None:
        for key in ("dtype", "compute_dtype"):
            if getattr(self, key) not in DTYPES:
                raise ConfigError(f"`{key}` must be one of {sorted(DTYPES)}; got {getattr(self, key)!r}.")

    @classmethod
    def for_model(
        cls, model, *, dtype: str = "float16", validator_level: int | None = None, jpeg_quality: int = 75, query_policy: str | None = None
    ) -> CacheSpec:
        return cls(
            backbone_id=backbone_id(model.backbone, model.config.backbone),
            views=model.config.views,
            hidden_size=model.hidden_size,
            dtype=dtype,
            compute_dtype=model.config.dtype,
            validator_level=validator_level,
            jpeg_quality=jpeg_quality,
            query_policy=query_policy,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def namespace(self) -> str:
        """Folder name: a short hash of the spec (without ``query_policy`` when None, so caches made
        before contracts were data keep their names)."""
        spec = {k: v for k, v in self.to_dict().items() if not (k == "query_policy" and v is None)}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def backbone_id(backbone: torch.nn.Module, name: str = "") -> str:
    """``<name>@<sha256 of the weights, 16 hex>``: a fine-tuned backbone never reuses old features."""
    digest = hashlib.sha256()
    for key, tensor in backbone.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{name}@{digest.hexdigest()[:16]}"


@dataclass
class CacheStats:
    """What one :func:`cache_features` call cost."""

    hits: int = 0
    computed: int = 0
    forwards: int = 0
    dropped_shards: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CachedFeatures:
    """Features of N images × M queries: what :func:`~curation.stage1.train.train_head` reads."""

    features: torch.Tensor  # [N, M, V, 2D] storage dtype
    stats: torch.Tensor  # [N, M, V, 4] float32
    keys: list[list[Key]]  # [N][M]
    report: CacheStats


class FeatureCache:
    """Read and append shards of one namespace. Constructing touches no disk.

    Args:
        root: cache root folder (e.g. ``Settings.cache_root / "stage1"``).
        spec: the namespace's :class:`CacheSpec`.
        shard_bytes: largest shard written, in feature bytes.
    """

    def __init__(self, root: str | Path, spec: CacheSpec, *, shard_bytes: int = 256 << 20):
        self.root = Path(root)
        self.spec = spec
        self.shard_bytes = int(shard_bytes)
        self._index: dict | None = None
        self._where: dict[Key, tuple[str, int]] = {}
        self.dropped: list[str] = []  # shards dropped since the last :func:`cache_features` call

    @property
    def directory(self) -> Path:
        return self.root / self.spec.namespace()

    # Index -------------------------------------------------------------------------------------
    def _load(self) -> dict:
        if self._index is not None:
            return self._index
        path = self.directory / INDEX
        index = {"format": FORMAT, "spec": self.spec.to_dict(), "shards": {}}
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                log.warning("Feature cache index %s is unreadable (%s); starting an empty index.", path, e)
                stored = None
            if stored and stored.get("format") == FORMAT and stored.get("spec") == index["spec"]:
                index = stored
        self._index = index
        dropped = [name for name, entry in index["shards"].items() if not self._size_ok(name, entry)]
        for name in dropped:
            self._drop(name, "missing or wrong size (partial write?)")
        self._reindex()
        return index

    def _size_ok(self, name: str, entry: dict) -> bool:
        path = self.directory / name
        return path.is_file() and path.stat().st_size == entry["size"]

    def _reindex(self) -> None:
        self._where = {
            (str(h), int(s)): (name, row)
            for name, entry in self._index["shards"].items()
            for row, (h, s) in enumerate(entry["keys"])
        }

    def _write_index(self) -> None:
        path = self.directory / INDEX
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self._index))
        os.replace(tmp, path)

    def _drop(self, name: str, why: str) -> None:
        log.warning("Feature cache shard %s dropped: %s; its features will be recomputed.", self.directory / name, why)
        self._index["shards"].pop(name, None)
        (self.directory / name).unlink(missing_ok=True)
        self._write_index()
        self._reindex()
        self.dropped.append(name)

    def __len__(self) -> int:
        self._load()
        return len(self._where)

    def missing(self, keys: Sequence[Key]) -> list[Key]:
        """Keys not in the cache, in the given order (duplicates kept once)."""
        self._load()
        seen: set[Key] = set()
        out = []
        for key in keys:
            key = (str(key[0]), int(key[1]))
            if key not in self._where and key not in seen:
                seen.add(key)
                out.append(key)
        return out

    # Write ---------------------------------------------------------------------------------------
    def put(self, keys: Sequence[Key], features: torch.Tensor, stats: torch.Tensor | None = None) -> None:
        """Append features [n, V, 2D] for ``keys`` as one or more shards (existing keys are skipped)."""
        from safetensors.torch import save

        self._load()
        spec = self.spec
        expected = (spec.views.num_views, 2 * spec.hidden_size)
        if features.dim() != 3 or tuple(features.shape[1:]) != expected or features.shape[0] != len(keys):
            raise InputError(f"`features` must be [{len(keys)}, {expected[0]}, {expected[1]}]; got {tuple(features.shape)}.")
        features = features.detach().to("cpu", DTYPES[spec.dtype]).contiguous()
        stats = view_stats(features, spec.hidden_size) if stats is None else stats.detach().float().cpu().contiguous()
        keys = [(str(h), int(s)) for h, s in keys]
        fresh = [i for i, k in enumerate(keys) if k not in self._where]
        if not fresh:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        row_bytes = features[0].numel() * features.element_size()
        per_shard = max(1, self.shard_bytes // row_bytes)
        for start in range(0, len(fresh), per_shard):
            rows = torch.tensor(fresh[start : start + per_shard])
            chunk_keys = [keys[i] for i in rows.tolist()]
            data = save({"features": features[rows].contiguous(), "stats": stats[rows].contiguous()}, metadata={"format": FORMAT})
            digest = hashlib.sha256(data).hexdigest()
            name = f"shard-{digest[:20]}.safetensors"  # content-addressed: a rewrite never clashes
            tmp = self.directory / f"{name}.tmp{os.getpid()}"
            tmp.write_bytes(data)
            os.replace(tmp, self.directory / name)
            self._index["shards"][name] = {"size": len(data), "sha256": digest, "keys": chunk_keys}
            self._write_index()
            self._where.update({k: (name, r) for r, k in enumerate(chunk_keys)})

    # Read ----------------------------------------------------------------------------------------
    def get(self, keys: Sequence[Key], *, out: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, list[Key]]:
        """Read ``keys`` into one contiguous tensor pair, verifying each shard's sha256 once.

        Returns:
            (features [n, V, 2D], stats [n, V, 4], keys that are missing or were in a corrupted
            shard — their rows are left unfilled).
        """
        from safetensors.torch import load

        self._load()
        spec = self.spec
        keys = [(str(h), int(s)) for h, s in keys]
        shape = (len(keys), spec.views.num_views)
        features, stats = out or (
            torch.empty((*shape, 2 * spec.hidden_size), dtype=DTYPES[spec.dtype]),
            torch.empty((*shape, STATS_WIDTH), dtype=torch.float32),
        )
        by_shard: dict[str, list[tuple[int, int]]] = {}
        absent = []
        for i, key in enumerate(keys):
            if key in self._where:
                name, row = self._where[key]
                by_shard.setdefault(name, []).append((i, row))
            else:
                absent.append(key)
        for name, pairs in by_shard.items():
            entry = self._index["shards"][name]
            try:
                data = (self.directory / name).read_bytes()
            except OSError:
                data = b""
            if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                self._drop(name, "checksum mismatch (corrupted)")
                absent += [keys[i] for i, _ in pairs]
                continue
            tensors = load(data)
            dst = torch.tensor([i for i, _ in pairs])
            src = torch.tensor([r for _, r in pairs])
            features.index_copy_(0, dst, tensors["features"].index_select(0, src))
            stats.index_copy_(0, dst, tensors["stats"].index_select(0, src))
        return features, stats, absent


@dataclass(frozen=True)
class FeatureJob:
    """One image's missing queries: the image (PIL, or a path read where the work runs) and its keys."""

    image: Any
    keys: list[Key]


class FeatureEngine(Protocol):
    """Computes missing cache features somewhere else than this process (e.g. on Ray:
    :class:`curation.predict.ray_engine.RayEngine`); the caller keeps writing the cache.

    ``features`` yields ``(keys, features [q, V, 2D])`` blocks in any order, each key's features being
    :func:`query_features` of :func:`job_queries`; an unreadable image raises :class:`InputError` as
    :func:`~curation.stage1.train.load_training_image` does.
    """

    def features(self, model: Any, spec: CacheSpec, jobs: Sequence[FeatureJob], *, batch_queries: int) -> Iterator[tuple[list[Key], torch.Tensor]]: ...


def job_queries(job: FeatureJob, spec: CacheSpec) -> list[torch.Tensor]:
    """The validator queries (uint8 [3, H, W]) of ``job``'s keys, reading its image once."""
    from curation.stage1.train import load_training_image

    image = load_training_image(job.image)
    return [_query_tensor(image, seed, spec) for _, seed in job.keys]


@torch.inference_mode()
def query_features(model, queries: list[torch.Tensor]) -> torch.Tensor:
    """Backbone features [q, V, 2D] of validator queries: their views cut, one forward (any engine runs this)."""
    from curation.stage1.views import build_views

    views = build_views([t.to(model.device) for t in queries], model.config.views)  # [q·V, 3, S, S]
    return model.features(views).view(len(queries), model.config.views.num_views, -1)


def _query_tensor(image, seed: int, spec: CacheSpec):
    from curation.stage1.query_policies import contract_query
    from curation.stage1.views import pil_to_tensor

    return pil_to_tensor(contract_query(image, seed, spec.query_policy, spec.validator_level, quality=spec.jpeg_quality))


@torch.inference_mode()
def cache_features(
    images: Sequence,
    content_hashes: Sequence[str],
    model,
    cache: FeatureCache,
    *,
    augmentations: int,
    seed: int = 0,
    batch_queries: int = 32,
    engine: FeatureEngine | None = None,
) -> CachedFeatures:
    """Features of ``augmentations`` validator queries per image, computing only what is missing.

    Query m of an image uses seed :func:`augmentation_seed` (content hash, m, ``seed``): the
    validator transform (level, 224×224, JPEG) is applied first, then the views are cut, and
    ``batch_queries`` queries go through the backbone as one batch.

    Args:
        images: PIL images or paths; a path is read only if one of its queries is missing.
        content_hashes: [N] content hashes (the dataset's ``content_hash``).
        model: the :class:`~curation.stage1.model.Stage1Model` whose backbone the cache spec names.
        cache: the cache to read and fill.
        engine: computes the missing features elsewhere (e.g. Ray actors); this process still writes
            the cache, so its shard guarantees do not depend on the engine. None: computed here.
    """
    if len(images) != len(content_hashes):
        raise InputError(f"{len(images)} images but {len(content_hashes)} content hashes.")
    if augmentations < 1:
        raise ConfigError(f"`augmentations` must be ≥ 1; got {augmentations}.")
    if cache.spec.views != model.config.views or cache.spec.hidden_size != model.hidden_size:
        raise ConfigError("The cache spec's view policy or width does not match the model; build it with CacheSpec.for_model(model).")
    keys = [[(str(h), augmentation_seed(str(h), m, seed)) for m in range(augmentations)] for h in content_hashes]
    flat_keys = [k for row in keys for k in row]
    report = CacheStats()
    cache.dropped = []
    for _attempt in range(3):
        todo = set(cache.missing(flat_keys))
        report.hits = len(set(flat_keys)) - len(todo) if _attempt == 0 else report.hits
        jobs = _missing_jobs(images, keys, todo)
        if engine is not None:
            _compute_on(engine, model, cache, jobs, batch_queries, report)
        else:
            _compute_here(model, cache, jobs, batch_queries, report)
        features, stats, absent = cache.get(flat_keys)
        if not absent:
            break
    else:
        raise InputError(f"Feature cache {cache.directory} keeps losing shards (disk problem?); {len(absent)} keys missing.")
    report.dropped_shards = list(cache.dropped)
    n, views = len(keys), cache.spec.views.num_views
    return CachedFeatures(
        features=features.view(n, augmentations, views, -1),
        stats=stats.view(n, augmentations, views, STATS_WIDTH),
        keys=keys,
        report=report,
    )


def _missing_jobs(images: Sequence, keys: list[list[Key]], todo: set[Key]) -> list[FeatureJob]:
    """One job per image with missing queries; a key shared by two images is computed once."""
    jobs = []
    for image, row in zip(images, keys, strict=True):
        wanted = [k for k in row if k in todo]
        todo.difference_update(wanted)
        if wanted:
            jobs.append(FeatureJob(image, wanted))
    return jobs


def _compute_here(model, cache: FeatureCache, jobs: list[FeatureJob], batch_queries: int, report: CacheStats) -> None:
    """This process reads each job's image and forwards ``batch_queries`` queries at a time."""
    pending: list[tuple[Key, torch.Tensor]] = []
    for job in jobs:
        pending.extend(zip(job.keys, job_queries(job, cache.spec), strict=True))
        while len(pending) >= batch_queries:
            _forward(model, cache, pending[:batch_queries], report)
            pending = pending[batch_queries:]
    if pending:
        _forward(model, cache, pending, report)


def _compute_on(engine: FeatureEngine, model, cache: FeatureCache, jobs: list[FeatureJob], batch_queries: int, report: CacheStats) -> None:
    """``engine`` computes the jobs' queries; this process writes them."""
    if not jobs:
        return
    for block_keys, feats in engine.features(model, cache.spec, jobs, batch_queries=batch_queries):
        cache.put(block_keys, feats)
        report.computed += len(block_keys)
        report.forwards += 1


def _forward(model, cache: FeatureCache, pending: list, report: CacheStats) -> None:
    cache.put([k for k, _ in pending], query_features(model, [t for _, t in pending]))  # [q, V, 2D]
    report.computed += len(pending)
    report.forwards += 1
