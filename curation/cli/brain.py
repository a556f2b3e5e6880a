"""CLI commands ``brain``, ``similar`` and ``runs``: the embeddings map and "more like this" on
Stage-1 embeddings, and the platform's runs as FiftyOne lists them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from curation.cli.base import SettingsOption, command, console, load_settings
from curation.mine.similar import SimilarConfig


def _dataset(settings_file):
    from curation import store

    return store.open_dataset(load_settings(settings_file), create=False)


@command("brain")
def brain_command(
    settings_file: SettingsOption = None,
    version: Annotated[str | None, typer.Option(help="Model version whose embeddings to index (default: the one on most samples).")] = None,
    method: Annotated[str, typer.Option(help="Map method: umap, tsne or pca.")] = "umap",
    overwrite: Annotated[bool, typer.Option(help="Recompute even when the runs already cover the same samples.")] = False,
    backend: Annotated[str, typer.Option(help="FiftyOne similarity backend: sklearn (in memory) or a vector database (qdrant, milvus, lancedb, ...).")] = "sklearn",
) -> None:
    """Embeddings map (App: Embeddings panel), similarity index and uniqueness for one model version."""
    from curation.store.brain import index_embeddings

    report = index_embeddings(_dataset(settings_file), version=version, method=method, backend=backend, overwrite=overwrite)
    console.print(report.summary())


@command("similar")
def similar_command(
    ids: Annotated[list[str], typer.Argument(help="Sample ids to search like (e.g. a false positive from the App).")],
    settings_file: SettingsOption = None,
    k: Annotated[int, typer.Option(min=1, help="How many nearest pool/train samples to tag.")] = SimilarConfig.k,
    exclude_labeled: Annotated[bool, typer.Option(help="Leave out samples that already have a ground-truth label.")] = SimilarConfig.exclude_labeled,
    tag: Annotated[bool, typer.Option(help="Tag them as a labeling batch (--no-tag: only list them, nearest first).")] = True,
) -> None:
    """The pool/train samples most like IDS, tagged as a labeling batch similar:YYYY-MM-DD:<hash> (idempotent)."""
    from curation.mine.similar import find_similar, tag_similar

    dataset, config = _dataset(settings_file), SimilarConfig(k=k, exclude_labeled=exclude_labeled)
    if not tag:
        found, key = find_similar(dataset, ids, config)
        for sample_id, path in zip(found, dataset.select(found, ordered=True).values("filepath"), strict=True):
            console.print(f"{sample_id}  {path}")
        console.print(f"{len(found)} samples most like the {len(set(ids))} given (index `{key}`), nearest first; not tagged.")
        return
    console.print(tag_similar(dataset, ids, config).summary())


@command("runs")
def runs_command(
    settings_file: SettingsOption = None,
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind (predict, evaluate, gate, mine, similar, stage2, retrain, ...).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    delete: Annotated[str | None, typer.Option(help="Delete this run with the fields and tags only it wrote.")] = None,
) -> None:
    """The platform's runs on the dataset, newest first (FiftyOne runs: the App and `dataset.list_runs()` show them too)."""
    from curation import store

    dataset = _dataset(settings_file)
    if delete:
        gone = store.delete_run(dataset, delete)
        removed = ", ".join([*gone.fields, *gone.tags]) or "nothing else"
        console.print(f"deleted run `{delete}` ({gone.kind}); it named {removed} (kept where a remaining run names them too)")
    rows = store.list_runs(dataset, kind, limit=limit)
    if not rows:
        console.print("no runs" + (f" of kind {kind}" if kind else ""))
        return
    table = Table(title=f"Runs on {dataset.name}, newest first")
    for col in ("run key", "kind", "created (UTC)", "fields", "tags"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["_id"], r["kind"], f"{r['created_at']:%Y-%m-%d %H:%M:%S}", ", ".join(r["run_fields"]), ", ".join(r["run_tags"]))
    console.print(table)
