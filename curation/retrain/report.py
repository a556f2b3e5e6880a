"""The retrain run's report: markdown with PNG plots a lead reads before trusting a promotion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from curation import schema
from curation.stage1 import calibrate
from curation.stage1.gate import risk_coverage_curve
from curation.stage1.gate_plots import plot_risk_coverage


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_pr(y: np.ndarray, p: np.ndarray, threshold: float, path: Path) -> Path:
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    if y.min() != y.max():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label="challenger")
        decided = p >= threshold
        tp = int((decided & (y == 1)).sum())
        ax.scatter([tp / max(int(y.sum()), 1)], [tp / max(int(decided.sum()), 1)], color="red", zorder=3, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="PR curve (calib, validator view)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_slices(evaluation: dict[str, Any], split: str, path: Path) -> Path:
    names = ["overall", *schema.SLICES]
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    width = 0.4
    for offset, who in ((-width / 2, "champion"), (width / 2, "challenger")):
        rows = evaluation.get(who, {}).get(split)
        if not rows:
            continue
        values = [rows[n]["mcc"] if rows[n]["mcc"] is not None else np.nan for n in names]
        ax.bar(np.arange(len(names)) + offset, values, width, label=who)
    ax.set_xticks(np.arange(len(names)), [f"{n}\n(n={evaluation['challenger'][split][n]['n']})" for n in names], fontsize=7)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set(ylabel="MCC", title=f"Per-slice MCC on {split} (validator view); empty slices are not scored")
    ax.legend()
    return _save(fig, path)


def write_report(
    run_dir: Path, *, version: str, evaluation: dict[str, Any], calibration: dict[str, float], val: Any, calib: Any,
    fitted: Any, promoted: bool, reasons: list[str], counts: dict[str, Any], model: Any,
) -> Path:
    """Write ``report.md`` and its plots into ``run_dir``; returns the markdown path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "PR curve": plot_pr(calib.y, calib.p, model.config.threshold, run_dir / "pr_curve.png"),
        "Reliability (val)": calibrate.plot_reliability(calibrate.reliability_diagram(val.y, val.p), run_dir / "reliability.png"),
        "Champion vs challenger per slice (calib)": plot_slices(evaluation, "calib", run_dir / "slices_calib.png"),
    }
    if fitted is not None:
        plots["Risk-coverage (val, out-of-fold)"] = plot_risk_coverage(
            risk_coverage_curve(fitted.oof_risk, (val.p >= model.config.threshold).astype(int) == val.y), run_dir / "risk_coverage.png"
        )
        gate_line = (
            f"Gate (out-of-fold on val): AUROC {fitted.metrics.auroc:.3f}, FPR@95%TPR {fitted.metrics.fpr_at_95_tpr:.3f}, "
            f"AURC {fitted.metrics.aurc:.3f}; Learn-then-Test threshold {fitted.ltt.get('threshold')} (coverage {fitted.ltt.get('coverage')})."
        )
    else:
        gate_line = f"Gate: {calibration.get('gate', 'not fitted')}."
    trained = "trained" if model.config.trained else "UNTRAINED"
    lines = [
        f"# Retrain {version}: {'PROMOTED' if promoted else 'champion kept'}",
        "",
        *[f"- {r}" for r in reasons],
        "",
        f"Model: backbone `{model.config.backbone}` ({trained}), aggregator `{model.config.aggregator}`, "
        f"threshold {calibration['threshold']:.4f}, temperature {calibration['temperature']:.3f}, val ECE {calibration['ece_val']:.3f}.",
        "",
        f"Training data: {counts['n']} samples; by label {counts['by_label']}; hard negatives {counts['hard_negatives']}; "
        f"human-labeled {counts['human_labeled']}; by source {counts['by_source']}.",
        "",
        gate_line,
        "",
        "| split | slice | n | challenger MCC | champion MCC | challenger FPR | champion FPR |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, rows in evaluation["challenger"].items():
        champ = evaluation.get("champion", {}).get(split, {})
        for name, row in rows.items():
            c = champ.get(name, {})
            lines.append(f"| {split} | {name} | {row['n']} | {_fmt(row['mcc'])} | {_fmt(c.get('mcc'))} | {_fmt(row['fpr'])} | {_fmt(c.get('fpr'))} |")
    lines.append("")
    rewards = evaluation.get("reward", {})
    if rewards:
        lines += ["Expected validator reward on calib (the validator's windows simulated per contract; 90% bootstrap interval):", "",
                  "| contract | challenger | champion |", "|---|---|---|"]  # fmt: skip
        for name, r in rewards.get("challenger", {}).items():
            c = rewards.get("champion", {}).get(name)
            champ = f"{c['mean']:.3f} [{c['low']:.3f}, {c['high']:.3f}]" if c else "—"
            lines.append(f"| {name} | {r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {champ} |")
        lines += ["", "Consensus-scored tasks (2026-05) are assumed to agree with the truth; the last reason above names the "
                  "queries the promotion rule judged on.", ""]  # fmt: skip
    for title, path in plots.items():
        lines += [f"## {title}", "", f"![{title}]({Path(path).name})", ""]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines))
    return out


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"
