"""`curation detector train|propose` and `curation sam-boxes`: machine pre-labels for people to accept.

Imported by :mod:`curation.cli`; importing registers the ``detector`` sub-command group and
``sam-boxes`` on the main app. Ultralytics, SAM and FiftyOne load inside the commands so
``--help`` stays fast.

Examples::

    curation detector train --epochs 50 --device 0
    curation detector propose runs/detector/<stamp>/detector.pt --conf 0.3
    curation sam-boxes --config models/sam/segment_anything_vit_h.yaml --prompts proposals,stage1_views
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from curation.cli.base import SettingsOption, app, command, config_option, console, friendly_errors, load_settings
from curation.errors import ConfigError
from curation.label.detector import DetectorConfig

detector_app = typer.Typer(
    name="detector",
    help="Primitive detector (ultralytics YOLO, AGPL; `detector` extra): train on unified boxes, propose boxes.",
    no_args_is_help=True,
)
app.add_typer(detector_app, name="detector")


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields ``advance(n)`` for library functions' ``progress`` callbacks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _default_detector_config() -> Path:
    from curation.assets import asset_dir

    return asset_dir("models") / "detector" / "yolo11n.yaml"


@detector_app.command("train")
@friendly_errors
def detector_train_command(
    config_file: Annotated[Path | None, typer.Option("--config", help="Detector YAML (default models/detector/yolo11n.yaml).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default <home>/runs/detector/<UTC stamp>).")] = None,
    model: Annotated[str | None, typer.Option(help="Architecture yaml or LOCAL .pt checkpoint (overrides the config).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (overrides the config).")] = None,
    imgsz: Annotated[int | None, typer.Option(help="Image side, multiple of 32 (overrides the config).")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size (overrides the config).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, 0, 0,1 (overrides the config).")] = None,
    settings_file: SettingsOption = None,
) -> None:
    """Train a YOLO detector on the train-split ROADWork/Roboflow `primitives`; write weights and a card."""
    from curation import store
    from curation.label.detector import train_detector

    settings = load_settings(settings_file)
    config = DetectorConfig.from_yaml(
        config_file or _default_detector_config(), model=model, epochs=epochs, imgsz=imgsz, batch=batch, device=device
    )
    out = out or settings.runs_root / "detector" / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dataset = store.open_dataset(settings, create=False)
    result = train_detector(dataset, out, config, config_root=settings.cache_root / "ultralytics")
    card = result.card
    console.print(
        f"[bold]{result.weights}[/]: {card['n_train_images']} train / {card['n_holdout_images']} held-out images, "
        f"held-out mAP50 {result.map50:.3f}, mAP50-95 {result.map50_95:.3f}, quality [bold]{card['quality']}[/]"
    )
    for reason in card["quality_reasons"]:
        console.print(f"  [yellow]demo quality:[/] {reason}")
    console.print(f"Card: {result.card_path}")


@detector_app.command("propose")
@friendly_errors
def detector_propose_command(
    weights: Annotated[Path, typer.Argument(help="Local detector weights (detector.pt from `detector train`).")],
    conf: Annotated[float, config_option(DetectorConfig, "conf")] = DetectorConfig.conf,
    iou: Annotated[float, config_option(DetectorConfig, "iou")] = DetectorConfig.iou,
    imgsz: Annotated[int, config_option(DetectorConfig, "imgsz")] = DetectorConfig.imgsz,
    device: Annotated[str, config_option(DetectorConfig, "device")] = DetectorConfig.device,
    batch_size: Annotated[int, typer.Option(help="Images per forward and per database write.")] = 16,
    field: Annotated[str, typer.Option(help="Field to write.")] = "primitive_proposals",
    include_boxed: Annotated[bool, typer.Option(help="Also propose on samples that already have `primitives`.")] = False,
    tag: Annotated[str | None, typer.Option(help="Only samples with this tag.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many samples.")] = None,
    settings_file: SettingsOption = None,
) -> None:
    """Write detector proposals (boxes with confidences) on images without boxes."""
    from curation import store
    from curation.label.detector import check_weights, propose, unboxed_view

    weights = check_weights(weights)
    settings = load_settings(settings_file)
    view = store.open_dataset(settings, create=False)
    if tag:
        view = view.match_tags(tag)
    if not include_boxed:
        view = unboxed_view(view)
    if limit is not None:
        view = view.limit(limit)
    with progress_bar("proposing boxes", len(view)) as advance:
        result = propose(
            view, weights, conf, iou=iou, imgsz=imgsz, device=device, batch_size=batch_size, field=field,
            only_unboxed=False, config_root=settings.cache_root / "ultralytics", progress=advance,
        )
    console.print(f"Wrote {result.n_boxes} boxes on {result.n_samples} samples to `{result.field}`.")


@command("sam-boxes")
def sam_boxes_command(
    config_file: Annotated[Path | None, typer.Option("--config", help="SAM YAML (models/sam/*.yaml).")] = None,
    backend: Annotated[str | None, typer.Option(help="segment_anything | transformers | sam3.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Local sam_vit_*.pth (segment_anything).")] = None,
    model_type: Annotated[str | None, typer.Option(help="vit_b | vit_l | vit_h (segment_anything).")] = None,
    model: Annotated[str | None, typer.Option(help="Hub id or local folder (transformers, sam3).")] = None,
    prompts: Annotated[str | None, typer.Option(help="Comma list: proposals,stage1_views,boxes,points,text.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    out_field: Annotated[str | None, typer.Option(help="Field to write (default sam_primitives).")] = None,
    tag: Annotated[str | None, typer.Option(help="Only samples with this tag.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many samples.")] = None,
    settings_file: SettingsOption = None,
) -> None:
    """SAM-assisted boxes: masks and tight boxes from proposals, evidence views, boxes, points or text."""
    from curation import store
    from curation.label.sam import SamBoxesConfig, sam_boxes

    overrides = {
        "backend": backend,
        "checkpoint": checkpoint,
        "model_type": model_type,
        "model": model,
        "device": device,
        "out_field": out_field,
        "prompts": [p.strip() for p in prompts.split(",") if p.strip()] if prompts else None,
    }
    if config_file:
        config = SamBoxesConfig.from_yaml(config_file, **overrides)
    else:
        from curation.typed_config import from_mapping

        config = from_mapping(SamBoxesConfig, {k: v for k, v in overrides.items() if v is not None}, source="command line")
    if config.backend == "segment_anything" and config.checkpoint is None:
        raise ConfigError("Pass --checkpoint (a local sam_vit_*.pth) or --config models/sam/<name>.yaml.")
    settings = load_settings(settings_file)
    view = store.open_dataset(settings, create=False)
    if tag:
        view = view.match_tags(tag)
    if limit is not None:
        view = view.limit(limit)
    with progress_bar("segmenting", len(view)) as advance:
        result = sam_boxes(view, config, progress=advance)
    console.print(
        f"Wrote {result.n_masks} masks on {result.n_samples} samples to `{result.field}` "
        f"({result.n_empty} prompts gave an empty mask)."
    )
