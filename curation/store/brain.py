"""FiftyOne Brain runs on Stage-1 embeddings: the App's embeddings map, the "more like this" index and
uniqueness, one brain key of each per model version.

Embeddings of two model versions live in different spaces, so each version gets its own map
(``stage1_map_<version>``) and similarity index (``stage1_sim_<version>``) over the samples that
version predicted; ``uniqueness`` is rewritten for the version indexed last. Re-running for a
version whose runs already cover the same samples is a no-op.

Example:
    >>> # report = index_embeddings(dataset)  # after `curation predict`; then open the App
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from curation import schema
from curation.errors import InputError

EMBEDDINGS_FIELD = "stage1_embedding"
UNIQUENESS_FIELD = "uniqueness"
MAP_METHODS = ("umap", "tsne", "pca")
COLOR_BY = "eval_stage1"  # the evaluate job's TP/FP/FN/TN field; slices and hardness are one click away


def brain_keys(version: str) -> tuple[str, str]:
    """(map key, similarity key) of a model version: valid brain keys (letters, digits, ``_``)."""
    slug = re.sub(r"[^0-9A-Za-z_]", "_", version)
    return f"stage1_map_{slug}", f"stage1_sim_{slug}"


@dataclass(frozen=True)
class BrainReport:
    version: str
    n_samples: int
    map_key: str
    similarity_key: str
    method: str
    reused: bool
    map_seconds: float = 0.0
    index_seconds: float = 0.0
    uniqueness_seconds: float = 0.0

    def summary(self) -> str:
        if self.reused:
            return f"Brain runs for {self.version} already cover its {self.n_samples} samples: {self.map_key}, {self.similarity_key}."
        return (
            f"{self.n_samples} embeddings of {self.version}: map `{self.map_key}` ({self.method}, {self.map_seconds:.1f} s), "
            f"similarity `{self.similarity_key}` ({self.index_seconds:.1f} s), `{UNIQUENESS_FIELD}` ({self.uniqueness_seconds:.1f} s). "
            f"App: the '{schema.MAP_WORKSPACE}' workspace."
        )


def embedded_view(dataset: Any, version: str | None = None) -> tuple[Any, str]:
    """Samples with a Stage-1 embedding of ``version`` (default: the only version, else the one
    on most samples), and that version.

    Raises:
        InputError: no sample has an embedding, or ``version`` wrote none.
    """
    from fiftyone import ViewField as F

    embedded = dataset.exists(EMBEDDINGS_FIELD)
    counts = Counter(embedded.values("model_version"))
    if not counts:
        raise InputError(f"No sample of `{dataset.name}` has a `{EMBEDDINGS_FIELD}`; run `curation predict` first.")
    if version is None:
        version = counts.most_common(1)[0][0]
    elif version not in counts:
        raise InputError(f"No embedding of model version `{version}` in `{dataset.name}`; versions with embeddings: {dict(counts)}.")
    return embedded.match(F("model_version") == version), version


def similarity_key(dataset: Any, version: str | None = None) -> str:
    """The similarity index of ``version`` (default as in :func:`embedded_view`, which reads every
    sample's version: a query that knows its version skips that scan).

    Raises:
        InputError: that version has no index yet (the message gives the command).
    """
    if version is None:
        _, version = embedded_view(dataset)
    key = brain_keys(version)[1]
    if not dataset.has_brain_run(key):
        raise InputError(f"Model version `{version}` has no similarity index `{key}`; run `curation brain` (or the App's 'Roadwork: embeddings map').")
    return key


def index_embeddings(
    dataset: Any, *, version: str | None = None, method: str = "umap", backend: str = "sklearn", overwrite: bool = False, progress: bool = True
) -> BrainReport:
    """Compute the map, the similarity index and uniqueness for ``version``'s embeddings.

    Args:
        method: ``umap`` (umap-learn), ``tsne`` or ``pca`` for the 2-D map.
        backend: FiftyOne similarity backend; ``sklearn`` keeps the index in the dataset
            (README: pointing it at a vector database).
        overwrite: recompute even when the runs already cover the same samples.
    """
    import fiftyone.brain as fob

    from curation.errors import suggest

    if method not in MAP_METHODS:
        raise InputError(f"Map method must be one of {', '.join(MAP_METHODS)}; got {method!r}.{suggest(method, MAP_METHODS)}")
    backends = list(fob.brain_config.similarity_backends)
    if backend not in backends:
        raise InputError(f"Unknown similarity backend {backend!r}.{suggest(backend, backends)} FiftyOne knows: {', '.join(backends)}.")
    view, version = embedded_view(dataset, version)
    n = view.count()
    if n < 3:
        raise InputError(f"Model version `{version}` embedded {n} samples; a map needs at least 3.")
    map_key, sim_key = brain_keys(version)
    dim = len(view.first()[EMBEDDINGS_FIELD])
    if not overwrite and _current(dataset, map_key, sim_key, n=n, method=method, backend=backend):
        return BrainReport(version, n, map_key, sim_key, method, reused=True)

    # Each run is computed under a temporary key and swapped in, so a failure (an unreachable vector
    # database, a killed job) leaves the previous map and index working.
    seconds = []
    for key, compute in (
        (map_key, lambda tmp: fob.compute_visualization(view, embeddings=EMBEDDINGS_FIELD, method=method, brain_key=tmp, seed=0, progress=progress, **_map_options(method, n, dim, verbose=progress))),
        (sim_key, lambda tmp: fob.compute_similarity(view, embeddings=EMBEDDINGS_FIELD, backend=backend, metric="cosine", brain_key=tmp, progress=progress)),
    ):
        tmp = f"{key}_next"
        if dataset.has_brain_run(tmp):  # left by a killed run
            dataset.delete_brain_run(tmp)
        began = time.perf_counter()
        compute(tmp)
        seconds.append(time.perf_counter() - began)
        if dataset.has_brain_run(key):
            dataset.delete_brain_run(key)
        dataset.rename_brain_run(tmp, key)
    began = time.perf_counter()
    if dataset.has_brain_run(UNIQUENESS_FIELD):  # its key is the field's name: it cannot be computed aside
        dataset.delete_brain_run(UNIQUENESS_FIELD)
    fob.compute_uniqueness(view, uniqueness_field=UNIQUENESS_FIELD, embeddings=EMBEDDINGS_FIELD, progress=progress)
    seconds.append(time.perf_counter() - began)
    _save_workspace(dataset, map_key)
    return BrainReport(version, n, map_key, sim_key, method, False, *seconds)


def _map_options(method: str, n: int, dim: int, *, verbose: bool) -> dict[str, Any]:
    """Small sets: UMAP's default 15 neighbours need more points, t-SNE's first PCA to 50 dimensions more
    of both. The reducers' own epoch logs follow ``progress``."""
    if method == "umap":
        return {"n_neighbors": max(2, min(15, n - 1)), "verbose": verbose}
    if method == "tsne":
        return {"pca_dims": min(50, n, dim), "perplexity": min(30.0, (n - 1) / 3), "verbose": verbose}
    return {}


def _current(dataset: Any, map_key: str, sim_key: str, *, n: int, method: str, backend: str) -> bool:
    """Whether the runs exist with this method and backend and the map has ``n`` points (the map's
    results hold its sample ids; reading the index's would load every vector from the database)."""
    if not all(dataset.has_brain_run(k) for k in (map_key, sim_key, UNIQUENESS_FIELD)):
        return False
    if dataset.get_brain_info(map_key).config.method != method or dataset.get_brain_info(sim_key).config.method != backend:
        return False
    try:
        return len(dataset.load_brain_results(map_key, cache=False).sample_ids) == n
    except Exception:  # noqa: BLE001 - results that cannot be loaded are recomputed
        return False


def _save_workspace(dataset: Any, map_key: str) -> None:
    import fiftyone as fo

    workspace = fo.Space(
        children=[
            fo.Panel(type="Samples", pinned=True),
            fo.Panel(type="Embeddings", state={"openKey": map_key, "colorField": COLOR_BY}),
        ],
        orientation="horizontal",
    )
    dataset.save_workspace(schema.MAP_WORKSPACE, workspace, description=f"Grid beside the Stage-1 embeddings map `{map_key}`", overwrite=True)
