"""`curation label ...`: the labeler's queue and label changes from the command line.

The same functions back the App operators (mark hard negative, mark roadwork, undo, accept
boxes); every change is recorded in the sample's ``label_history`` under the configured user.
"""

from __future__ import annotations

from typing import Annotated

import typer

from curation.cli.base import SettingsOption, app, config_option, console, friendly_errors, load_settings
from curation.label.human_labels import OrangeQueueConfig

label_app = typer.Typer(help="Label queues and human label changes (recorded with history).", no_args_is_help=True)
app.add_typer(label_app, name="label")

IdsArgument = Annotated[list[str], typer.Argument(help="Sample ids.")]


def _open(settings_file):
    from curation import store

    settings = load_settings(settings_file)
    return settings, store.open_dataset(settings, create=False)


def _select(dataset, ids: list[str]):
    from curation.errors import InputError

    view = dataset.select(ids)
    missing = sorted(set(ids) - set(view.values("id")))
    if missing:
        raise InputError(f"No sample with id {', '.join(missing[:5])} in `{dataset.name}`.")
    return view


@label_app.command("orange-candidates")
@friendly_errors
def orange_candidates_command(
    settings_file: SettingsOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to print.")] = 20,
    min_orange_share: Annotated[float, config_option(OrangeQueueConfig, "min_orange_share")] = OrangeQueueConfig.min_orange_share,
    batch: Annotated[str | None, typer.Option(help="Only this labeling batch: a mined hard:… or a similar:… tag.")] = None,
) -> None:
    """Likely orange false positives first: orange_share × p_roadwork, then failure_risk (saved view)."""
    from curation import schema
    from curation.label.human_labels import batch_view, orange_candidates

    _, dataset = _open(settings_file)
    view = orange_candidates(batch_view(dataset, batch) if batch else dataset, OrangeQueueConfig(min_orange_share=min_orange_share))
    rows = view.limit(limit).values(["id", "orange_share", "stage1.p_roadwork", "failure_risk", "ground_truth.label", "filepath"])
    for sid, share, p, risk, label, path in zip(*rows, strict=True):
        risk_text = "—" if risk is None else f"{risk:.2f}"
        console.print(f"{sid}  orange {share:.2f} × p {p:.2f} = {share * p:.3f}  risk {risk_text}  {label}  {path}")
    console.print(f"{view.count()} candidates; open the saved view `{schema.ORANGE_VIEW}` in the App to label them.")


@label_app.command("hard-negative")
@friendly_errors
def hard_negative_command(
    ids: IdsArgument,
    category: Annotated[str, typer.Option(help="ad, crane, foliage, vest, sunset_light, fence, vehicle, other.")],
    reason: Annotated[str, typer.Option()] = "",
    settings_file: SettingsOption = None,
) -> None:
    """Mark samples orange-but-not-roadwork (ground truth no_roadwork, tag hard_negative)."""
    from curation.label.human_labels import mark_hard_negative

    settings, dataset = _open(settings_file)
    n = mark_hard_negative(_select(dataset, ids), user=settings.user_name, category=category, reason=reason)
    console.print(f"Marked {n} hard negatives ({category}) as {settings.user_name}.")


@label_app.command("roadwork")
@friendly_errors
def roadwork_command(ids: IdsArgument, reason: Annotated[str, typer.Option()] = "missed positive", settings_file: SettingsOption = None) -> None:
    """Mark missed positives: ground truth roadwork, by a human."""
    from curation.label.human_labels import mark_roadwork

    settings, dataset = _open(settings_file)
    console.print(f"Marked {mark_roadwork(_select(dataset, ids), user=settings.user_name, reason=reason)} samples roadwork.")


@label_app.command("undo")
@friendly_errors
def undo_command(ids: IdsArgument, settings_file: SettingsOption = None) -> None:
    """Undo the last human label change of each sample (the undo is recorded too)."""
    from curation.label.human_labels import undo_label

    settings, dataset = _open(settings_file)
    console.print(f"Undid the last change on {undo_label(_select(dataset, ids), user=settings.user_name)} samples.")


@label_app.command("accept-boxes")
@friendly_errors
def accept_boxes_command(
    settings_file: SettingsOption = None,
    source: Annotated[list[str] | None, typer.Option(help="primitives_edit, primitive_proposals, sam_primitives.")] = None,
    min_confidence: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.5,
    tag: Annotated[str | None, typer.Option(help="Only samples with this tag (e.g. a hard:… or similar:… batch).")] = None,
) -> None:
    """Promote edited boxes / proposals into primitives; the label rule then updates ground truth."""
    from curation.label.human_labels import accept_boxes

    settings, dataset = _open(settings_file)
    view = dataset.match_tags(tag) if tag else dataset
    n = accept_boxes(view, user=settings.user_name, sources=tuple(source or ["primitives_edit"]), min_confidence=min_confidence)
    console.print(f"Accepted boxes on {n} samples.")
