"""`curation demo`: the whole loop on the demo corpus, on the embedded database.

corpus → ingest → Stage-1 (train the tiny preset, calibrate) → predict → evaluate → gate → mine →
label (scripted, marked as such) → synthesize (random-weight generator: never admitted) →
retrain → compare → export. Each step prints what it did and where to look.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console

from curation import store
from curation.config import Settings
from curation.demo.corpus import CorpusSpec, write_corpus

DEMO_DAY = date(2026, 11, 25)
"""Fixed mining day so re-running the demo is idempotent."""


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo run; the defaults finish in a few minutes on 2 CPU cores."""

    corpus: CorpusSpec = field(
        default_factory=lambda: CorpusSpec(n_natix_train=700, n_natix_test=200, n_roadwork=120, n_roboflow=40, n_queries=40)
    )
    mining_quota: int = 40
    min_hardness: float = 0.5
    synth_images: int = 4


@dataclass
class DemoReport:
    steps: dict[str, Any] = field(default_factory=dict)


def _step(console: Console, report: DemoReport, name: str, fn: Callable[[], Any]) -> Any:
    console.rule(f"[bold]{name}")
    result = fn()
    report.steps[name] = result
    return result


def run_demo(settings: Settings, config: DemoConfig = DemoConfig(), *, console: Console | None = None) -> DemoReport:
    """Run every step of the loop that exists, in order; safe to re-run."""
    from curation.cli_ingest import print_run
    from curation.ingest import ingest_corpus

    console = console or Console()
    report = DemoReport()
    corpus_dir = Path(settings.home) / "demo-corpus"
    dataset = store.open_dataset(settings)

    manifest = _step(console, report, "corpus", lambda: write_corpus(corpus_dir, config.corpus))
    console.print(f"{manifest.n_images} images in the real source formats under {corpus_dir}")

    summaries = _step(console, report, "ingest", lambda: ingest_corpus(dataset, corpus_dir, settings=settings, console=console))
    for summary in summaries:
        print_run(summary)

    for name, fn in _loop_steps(settings, dataset, corpus_dir, config, console):
        _step(console, report, name, fn)

    console.rule("[bold]where to look")
    status = store.status(dataset)
    console.print(f"{status.total} samples in `{status.name}` ({status.location}).")
    console.print(
        "Open the App with `curation app`, then: saved views failures/false_positives, "
        "failures/false_negatives, hard/latest, labels/orange_candidates; the 'failure browsing' workspace."
    )
    return report


def _loop_steps(settings: Settings, dataset: Any, corpus_dir: Path, config: DemoConfig, console: Console) -> list[tuple[str, Callable[[], Any]]]:
    """The model steps after ingest (kept apart so they can grow with the platform)."""
    from curation import registry
    from curation.demo.labeler import label_like_a_person
    from curation.evaluate import evaluate_predictions
    from curation.gating import fit_and_apply_gate
    from curation.mining import MiningConfig, mine
    from curation.predict import predict_collection

    state: dict[str, Any] = {}

    def model() -> Any:
        state["model"] = registry.resolve_model(settings, "tiny-random")
        console.print(f"[yellow]{state['model']!r}[/]")
        return state["model"].config.version

    def predict() -> int:
        return predict_collection(dataset, state["model"]).n_predicted

    def evaluate() -> Any:
        report = evaluate_predictions(dataset.match({"split": "val"}))
        console.print(f"val: n={report.overall.n} MCC={report.overall.mcc} accuracy={report.overall.accuracy}")
        return report

    def gate() -> Any:
        report = fit_and_apply_gate(dataset, settings.runs_root / "gates" / "demo")
        console.print(f"gate AUROC (out-of-fold, val): {report.metrics['auroc']:.3f}; LTT threshold {report.ltt.get('threshold')}")
        return report

    def mining() -> Any:
        report = mine(dataset, day=DEMO_DAY, config=MiningConfig(quota=config.mining_quota, min_hardness=config.min_hardness))
        console.print(f"{report.tag}: {len(report.selected_ids)} hard cases ({report.n_passed} of {report.n_candidates} passed)")
        return report

    def label() -> Any:
        result = label_like_a_person(dataset.match_tags(f"hard:{DEMO_DAY.isoformat()}"), corpus_dir / "truth.csv")
        console.print(f"scripted labeler (uses truth.csv, not a person): {result}")
        return result

    return [("model", model), ("predict", predict), ("evaluate", evaluate), ("gate", gate), ("mine", mining), ("label", label)]
