"""Stage-1 over a collection on Ray: decoding in Ray tasks, the model in Ray actors.

Why: one process (with loader workers) is the ceiling of :func:`~curation.predict.job.predict_collection`;
a team with several GPU boxes wants one run to use all of them, with retries and placement instead of
hand-started ``--shard`` workers. Ray Data batch inference is the standard shape of that job:

    ids, paths (driver) ──▶ decode tasks (CPU, any node) ──▶ model actors (GPU or CPU) ──▶ driver
                                                                                           │
                                                 staged bulk writes + promotion (MongoDB) ◀┘

- Decode tasks open each file (:func:`curation.media.open_rgb`), build the validator query when asked,
  and hand uint8 pixels on; a file that cannot be decoded becomes an error row (reported, skipped),
  never a failed task.
- Each model actor holds the Stage-1 model once (shipped through the object store, so nodes need the
  package but no shared model directory) and serves it as the model says (``stage1_serving``: a
  :class:`~curation.stage1.serving.ServingModel` sets itself up on the actor's device).
- Actors restart when they die and their block is retried (Ray Data's actor pool defaults:
  ``max_restarts=-1``, ``max_task_retries=-1``); a prediction is a pure function of the pixels and
  the weights, so a retried block yields the same values.
- The driver writes, reusing the single-process path's staged writes, promotion and run record, so
  results and their guarantees are the same whichever engine computed them.

Feature caching (:func:`curation.stage1.cache.cache_features` with ``engine=``) is the same shape: decode
tasks read each image once and build its missing validator queries, model actors cut the views and run
the backbone, and the driver appends the features to the cache (one writer, so its atomic shards hold).

Example:
    >>> from curation.settings import RaySettings
    >>> engine = RayEngine(RaySettings(num_actors=2))  # then predict_collection(view, model, engine=engine)
    >>> # or cache_features(paths, hashes, model, cache, augmentations=4, engine=engine)
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.errors import ConfigError, InputError
from curation.media import OPEN_ERRORS, open_rgb
from curation.settings import RaySettings

if TYPE_CHECKING:
    import torch

    from curation.stage1.cache import CacheSpec, FeatureJob, Key
    from curation.stage1.model import Stage1Model, Stage1Prediction

ENGINES = ("process", "ray")
"""Where model work runs: this process, or Ray (settings ``ray``)."""

Block = tuple[list[str], list["Stage1Prediction"], list[tuple[str, str]], int]
"""One block back at the driver: sample ids predicted, their predictions, (file, reason) skipped, rows done."""

_NO_SEED = -1
DECODED_BYTES = 8 << 20
"""Memory a decode task reserves per image of its block (a 1920×1080 RGB frame is 6.2 MB decoded)..."""
DECODE_WORKER_BYTES = 512 << 20
"""...on top of its worker (Python, PIL and torch for the validator-query transforms: ~470 MiB measured)."""


def connect(config: RaySettings) -> None:
    """Join ``config.address``, or start a local Ray here; nothing when Ray is already up.

    A local Ray gets at least one logical CPU more than the model actors reserve, so decode tasks
    are always schedulable beside them (on a 2-core machine two 1-CPU actors would otherwise starve
    the decoders).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("`--engine ray` needs Ray: install the `ray` extra (pip install 'curation[ray]').") from None
    if not ray.is_initialized():
        if config.address:
            ray.init(address=config.address, logging_level="WARNING")
        else:
            needed = math.ceil(config.num_actors * config.cpus_per_actor) + 1
            ray.init(num_cpus=max(os.cpu_count() or 1, needed), include_dashboard=False, logging_level="WARNING")
    gpus_needed, gpus = config.num_actors * config.gpus_per_actor, ray.cluster_resources().get("GPU", 0.0)
    if gpus_needed > gpus:  # Ray would wait for them forever
        raise ConfigError(
            f"Settings `ray` ask for {config.num_actors} actors × {config.gpus_per_actor} GPU = {gpus_needed:g} GPUs; the Ray cluster "
            f"has {gpus:g}. Lower `num_actors` / `gpus_per_actor` (0 runs on CPUs) or join a cluster with GPUs (`ray.address`)."
        )


def decode_rows(batch: dict[str, np.ndarray], contract: str | None = None) -> dict[str, np.ndarray]:
    """Decode task: ``{id, path, seed}`` rows → ``{id, path, image, error}`` (uint8 [H, W, 3] pixels).

    ``seed`` ≥ 0 turns the image into the validator query seeded so (the contract ``contract``), as
    the single-process path does; an undecodable file gets an empty image and its error message.
    """
    from curation.stage1.query_policies import contract_query

    n = len(batch["id"])
    images = np.empty(n, dtype=object)
    errors = []
    for i, (path, seed) in enumerate(zip(batch["path"], batch["seed"], strict=True)):
        try:
            image = open_rgb(str(path))
        except OPEN_ERRORS as e:
            images[i] = np.zeros((0, 0, 3), dtype=np.uint8)
            errors.append(f"{type(e).__name__}: {e}")
            continue
        if int(seed) != _NO_SEED:
            image = contract_query(image, int(seed), contract)
        images[i] = np.asarray(image.convert("RGB"), dtype=np.uint8)
        errors.append("")
    return {"id": batch["id"], "path": batch["path"], "image": images, "error": np.array(errors, dtype=object)}


def _objects(values: list) -> np.ndarray:
    """A 1-D object array of ``values`` (arrays of different shapes stay one per row)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def decode_queries(batch: dict[str, np.ndarray], spec: CacheSpec) -> dict[str, np.ndarray]:
    """Decode task: one row per image ``{item, hash, seed}`` → one row per query ``{hash, seed, query, error}``.

    ``item`` is the pickled image or path; each query is the uint8 [3, H, W] tensor the process path
    builds (:func:`~curation.stage1.cache.job_queries`). An unreadable image becomes one error row
    carrying the process path's message, so the driver can raise exactly that.
    """
    from curation.stage1.cache import FeatureJob, job_queries

    hashes, seeds, queries, errors = [], [], [], []
    for item, row_hashes, row_seeds in zip(batch["item"], batch["hash"], batch["seed"], strict=True):
        keys = [(str(h), int(s)) for h, s in zip(row_hashes, row_seeds, strict=True)]
        try:
            tensors = [t.numpy() for t in job_queries(FeatureJob(pickle.loads(item), keys), spec)]
        except InputError as e:
            keys, tensors, error = [(keys[0][0], _NO_SEED)], [np.zeros((3, 0, 0), dtype=np.uint8)], str(e)
        else:
            error = ""
        hashes += [h for h, _ in keys]
        seeds += [s for _, s in keys]
        queries += tensors
        errors += [error] * len(keys)
    return {"hash": np.array(hashes, dtype=object), "seed": np.array(seeds, dtype=np.int64), "query": _objects(queries), "error": np.array(errors, dtype=object)}


class Stage1Actor:
    """A model actor: gets the Stage-1 model from the object store once, predicts decoded blocks.

    Args:
        model: ``[ObjectRef]`` of the model (in a list, so Ray hands the reference, not a copy per call).
        threads: torch threads on a CPU actor (its reserved CPUs).
    """

    def __init__(self, model: list[Any], threads: int = 1):
        import ray
        import torch

        ref = model[0]
        self.model = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
        if ray.get_gpu_ids():
            from curation.stage1.serving import ServingModel

            if not isinstance(self.model, ServingModel):  # a served model picks its device in setup()
                self.model = self.model.to("cuda")
        else:
            torch.set_num_threads(max(1, threads))
        self.model.eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        ok = [i for i, error in enumerate(batch["error"]) if not error]
        # The same entry as the single-process path (Stage1Model.predict on PIL images), so the
        # numbers are the same code's.
        predictions = self.model.predict([Image.fromarray(np.asarray(batch["image"][i], dtype=np.uint8)) for i in ok])
        out = np.full(len(batch["id"]), b"", dtype=object)  # pickled here: Arrow has no type for a prediction
        for i, prediction in zip(ok, predictions, strict=True):
            out[i] = pickle.dumps(prediction)
        return {"id": batch["id"], "path": batch["path"], "error": batch["error"], "prediction": out}


class FeatureActor(Stage1Actor):
    """A model actor for the feature cache: views and backbone features of decoded validator queries."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from curation.stage1.cache import query_features

        ok = [i for i, error in enumerate(batch["error"]) if not error]
        out = np.zeros((len(batch["hash"]), self.model.config.views.num_views, 2 * self.model.hidden_size), dtype=np.float32)
        if ok:  # the same function as the process path, so the numbers are the same code's
            queries = [torch.from_numpy(np.array(batch["query"][i], dtype=np.uint8)) for i in ok]
            out[ok] = query_features(self.model, queries).float().cpu().numpy()
        return {"hash": batch["hash"], "seed": batch["seed"], "error": batch["error"], "features": out}


@dataclass(frozen=True)
class RayEngine:
    """Predict on Ray with ``config``'s cluster and actor sizes; see the module docstring.

    Args:
        config: the ``ray`` settings section.
        actor_class: the model actor (tests pass one that dies once to check retries).
        feature_actor_class: the model actor of :meth:`features`.
        progress_bars: Ray Data's own progress bars (the platform shows its own by default).
    """

    config: RaySettings = field(default_factory=RaySettings)
    actor_class: type = Stage1Actor
    feature_actor_class: type = FeatureActor
    progress_bars: bool = False

    def batches(
        self, model: Stage1Model, ids: Sequence[str], paths: dict[str, str], seeds: dict[str, int] | None, contract: str | None
    ) -> Iterator[Block]:
        """Stream predictions back to the driver, one block at a time, in completion order."""
        if not ids:
            return
        rows = [{"id": i, "path": paths[i], "seed": _NO_SEED if seeds is None else seeds[i]} for i in ids]
        data = self._dataset(rows, model, decode_rows, {"contract": contract}, self.actor_class, self.config.batch_size)
        for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
            kept, predictions, skipped = [], [], []
            for sample_id, path, error, prediction in zip(batch["id"], batch["path"], batch["error"], batch["prediction"], strict=True):
                if error:
                    skipped.append((str(path), str(error)))
                else:
                    kept.append(str(sample_id))
                    predictions.append(pickle.loads(prediction))
            yield kept, predictions, skipped, len(batch["id"])

    def features(self, model: Stage1Model, spec: CacheSpec, jobs: Sequence[FeatureJob], *, batch_queries: int) -> Iterator[tuple[list[Key], torch.Tensor]]:
        """Cache features of ``jobs`` (see :class:`~curation.stage1.cache.FeatureEngine`), one block at a time.

        Decode tasks take ``batch_size`` images each; actors forward ``batch_queries`` queries at a time.

        Raises:
            InputError: an image cannot be read (the message of the process path, naming the file).
        """
        import torch

        if not jobs:
            return
        rows = [{"item": pickle.dumps(job.image), "hash": [h for h, _ in job.keys], "seed": [s for _, s in job.keys]} for job in jobs]
        data = self._dataset(rows, model, decode_queries, {"spec": spec}, self.feature_actor_class, batch_queries)
        for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
            failed = [str(error) for error in batch["error"] if error]
            if failed:
                raise InputError(failed[0])
            keys = [(str(h), int(s)) for h, s in zip(batch["hash"], batch["seed"], strict=True)]
            yield keys, torch.from_numpy(np.ascontiguousarray(batch["features"]))

    def _dataset(self, rows: list[dict], model: Any, decode: Any, decode_kwargs: dict, actor_class: type, actor_batch: int) -> Any:
        """rows → decode tasks (``batch_size`` rows each) → model actors (``actor_batch`` rows per call), lazily."""
        import ray

        connect(self.config)
        ray.data.DataContext.get_current().enable_progress_bars = self.progress_bars
        size = self.config.batch_size
        data = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / size)))
        # The memory reservation also keeps decoding a task stage of its own: Ray Data fuses a task map
        # into the next actor map only when their resource requests match, and fused into the model
        # actor the decoding would run on the GPU's worker.
        data = data.map_batches(decode, fn_kwargs=decode_kwargs, batch_size=size, memory=DECODE_WORKER_BYTES + size * DECODED_BYTES)
        return data.map_batches(
            actor_class,
            fn_constructor_kwargs={"model": [ray.put(model)], "threads": max(1, int(self.config.cpus_per_actor))},
            batch_size=actor_batch,
            compute=ray.data.ActorPoolStrategy(size=self.config.num_actors),
            num_cpus=self.config.cpus_per_actor,
            num_gpus=self.config.gpus_per_actor,
        )
