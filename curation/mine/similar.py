""""More like this failure": the pool and train samples nearest to chosen samples in Stage-1
embedding space, tagged as a labeling batch (``similar:YYYY-MM-DD:<hash>``).

A person who finds one orange-billboard false positive asks for the hundred like it; the batch
then goes through the same queues as a mined one (the orange queue's ``--batch``, accept-boxes'
``--tag``). The query is the mean of the chosen samples' unit embeddings (FiftyOne Brain's
``sort_by_similarity`` on the version's cosine index). The tag hashes the query and the options,
so asking the same question again returns the same batch instead of a second one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from curation import schema, store
from curation.errors import InputError
from curation.store.brain import similarity_key

SEARCH_SPLITS = (schema.Split.POOL.value, schema.Split.TRAIN.value)


@dataclass(frozen=True)
class SimilarConfig:
    """Options of a "more like this" search.

    Attributes:
        k: how many neighbours to return.
        exclude_labeled: leave out samples that already have a ground-truth label.
        splits: where to search (never the evaluation splits, whose labels judge models).
    """

    k: int = 50
    exclude_labeled: bool = False
    splits: tuple[str, ...] = SEARCH_SPLITS

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise InputError(f"`k` must be a whole number ≥ 1; got {self.k!r}.")
        bad = sorted(set(self.splits) - set(SEARCH_SPLITS))
        if bad or not self.splits:
            raise InputError(f"Search splits must be among {', '.join(SEARCH_SPLITS)}; got {list(self.splits)}.")


@dataclass(frozen=True)
class SimilarBatch:
    tag: str
    query_ids: tuple[str, ...]
    ids: tuple[str, ...]
    brain_key: str
    run_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{len(self.ids)} samples most like the {len(self.query_ids)} selected (index `{self.brain_key}`), "
            f"tagged {self.tag}: label them with `curation label orange-candidates --batch {self.tag}` or the App."
        )


def batch_tag(query_ids: Sequence[str], config: SimilarConfig, day: date) -> str:
    """``similar:<day>:<hash of the sorted query ids and the options>``."""
    spec = json.dumps({"q": sorted(query_ids), "k": config.k, "x": config.exclude_labeled, "s": sorted(config.splits)}, sort_keys=True)
    return f"{schema.SIMILAR_TAG_PREFIX}{day.isoformat()}:{hashlib.sha256(spec.encode()).hexdigest()[:10]}"


def query_index(dataset: Any, query_ids: Sequence[str]) -> str:
    """The similarity index of the model version that embedded ``query_ids``.

    Raises:
        InputError: no query, an unknown id, a query without embedding, several versions, no index.
    """
    if not query_ids:
        raise InputError("Select at least one sample to search for similar ones.")
    from bson import ObjectId

    malformed = [q for q in query_ids if not ObjectId.is_valid(q)]
    if malformed:
        raise InputError(f"Not a sample id: {', '.join(map(repr, malformed[:5]))} (ids are 24 hex digits; copy them from the App or `curation status`).")
    found = dataset.select(list(query_ids))
    missing = sorted(set(query_ids) - set(found.values("id")))
    if missing:
        raise InputError(f"No sample with id {', '.join(missing[:5])} in `{dataset.name}`.")
    if found.exists("stage1_embedding").count() < len(found):
        raise InputError("Some selected samples have no Stage-1 embedding; predict them first (`curation predict`).")
    versions = set(found.values("model_version"))
    if len(versions) > 1:
        raise InputError(f"The selected samples were embedded by different model versions {sorted(map(str, versions))}; select samples of one version.")
    version = versions.pop()
    key = similarity_key(dataset, version)
    outside = sorted(set(query_ids) - set(dataset.load_brain_results(key).sample_ids))
    if outside:
        raise InputError(
            f"{len(outside)} selected sample(s) were predicted after the index `{key}` was built (e.g. {outside[0]}); "
            f"run `curation brain --version {version}` to add them."
        )
    return key


def find_similar(dataset: Any, query_ids: Sequence[str], config: SimilarConfig = SimilarConfig()) -> tuple[list[str], str]:
    """Ids of the ``config.k`` pool/train samples nearest the mean of ``query_ids``, nearest first,
    and the brain key used. The queries themselves and leak-tagged samples are never returned.

    Raises:
        InputError: no query, an unknown id, queries from several model versions, or no index.
    """
    from fiftyone import ViewField as F

    query_ids = list(dict.fromkeys(query_ids))
    key = query_index(dataset, query_ids)
    pool = dataset.match(F("split").is_in(list(config.splits))).match_tags([schema.TAG_LEAK, schema.TAG_LEAK_EMBEDDING], bool=False)
    pool = pool.exclude(query_ids)
    if config.exclude_labeled:
        pool = pool.exists("ground_truth", bool=False)
    indexed = pool.select(dataset.load_brain_results(key).sample_ids)  # samples of other versions are not in the index
    if not indexed.count():
        return [], key
    return indexed.sort_by_similarity(query_ids, k=config.k, brain_key=key).values("id"), key


def tag_similar(dataset: Any, query_ids: Sequence[str], config: SimilarConfig = SimilarConfig(), *, day: date | None = None) -> SimilarBatch:
    """Find the neighbours of ``query_ids`` and tag them as a labeling batch (idempotent: the same
    question on the same day returns the batch already tagged)."""
    from dataclasses import asdict

    query_ids = list(dict.fromkeys(query_ids))
    day = day or date.today()
    tag = batch_tag(query_ids, config, day)
    existing = dataset.match_tags(tag)
    if existing.count():
        ids, key = existing.values("id"), query_index(dataset, query_ids)
        run_id = None if store.runs_with_tag(dataset, tag) else _record(dataset, tag, query_ids, ids, key, config)  # killed after tagging
        return SimilarBatch(tag, tuple(query_ids), tuple(ids), key, run_id, asdict(config))
    ids, key = find_similar(dataset, query_ids, config)
    if ids:
        dataset.select(ids).tag_samples(tag)
    return SimilarBatch(tag, tuple(query_ids), tuple(ids), key, _record(dataset, tag, query_ids, ids, key, config), asdict(config))


def _record(dataset: Any, tag: str, query_ids: list[str], ids: list[str], key: str, config: SimilarConfig) -> str:
    from dataclasses import asdict

    payload = {"tag": tag, "query_ids": query_ids, "selected_ids": list(ids), "brain_key": key, "config": asdict(config)}
    return store.record_run(dataset, "similar", payload, tags=[tag])
