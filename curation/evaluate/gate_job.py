"""Fit the failure gate on val, certify an acceptance threshold on calib, write ``failure_risk``.

Split discipline (DESIGN.md section 4): the gate is fit on val; its reported metrics come from
cross-fitted (out-of-fold, sequence-grouped) risks on val, never in-sample ones; Learn-then-Test
runs on calib only, with its threshold grid fixed from val risks. ``stage1_correct`` is written
only where Stage-1 never trained (val, calib, test), since in-sample correctness on train says
nothing about routing.

One model at a time: the gate reads one model's gate features, so it is fit on, and writes
``failure_risk`` for, the samples that model predicted; samples still holding another model's
predictions (the daily job does not re-predict test) get no ``failure_risk`` until predicted again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curation import schema, store
from curation.errors import InputError
from curation.stage1 import crossfit, gate, risk
from curation.store import registry
from curation.typed_config import check_settings, setting

if TYPE_CHECKING:
    import fiftyone.core.collections as foc

GATE_FILE = "gate.json"


@dataclass(frozen=True)
class GateJobConfig:
    """How the failure gate is fit on val and its acceptance threshold certified on calib."""

    alpha: float = setting(0.1, help="Learn-then-Test: target error rate among accepted samples (α).", low=0.001, high=0.999)
    delta: float = setting(0.1, help="Learn-then-Test: allowed probability of missing α (δ).", low=0.001, high=0.999)
    gate: gate.GateConfig = field(default_factory=gate.GateConfig)
    n_splits: int = 5

    def __post_init__(self) -> None:
        check_settings(self)


def gate_dir(runs_root: Path, model_version: str | None) -> Path:
    """Where a model version's gate (``gate.json``, risk-coverage plot) is written."""
    return Path(runs_root) / "gates" / (model_version or "unversioned")


@dataclass(frozen=True)
class GateReport:
    n_val: int
    n_calib: int
    metrics: dict[str, float]  # out-of-fold on val: auroc, fpr_at_95_tpr, aurc
    ltt: dict[str, Any]
    gate_path: str
    plot_path: str
    run_id: str | None = None

    def summary(self) -> str:
        """The gate's quality and what Learn-then-Test certified, as the CLI prints and the App shows."""
        m, ltt = self.metrics, self.ltt
        text = (f"Gate on {self.n_val} val samples (out-of-fold): AUROC {m['auroc']:.3f}, FPR@95%TPR {m['fpr_at_95_tpr']:.3f}, "
                f"AURC {m['aurc']:.3f}. ")  # fmt: skip
        if ltt.get("threshold") is None:
            why = ltt.get("reason", "too few samples or too many errors")
            return text + f"Learn-then-Test on {self.n_calib} calib samples certified no threshold: defer all ({why})."
        return text + (
            f"Learn-then-Test on {self.n_calib} calib samples: accept failure_risk ≤ {ltt['threshold']:.4f} → coverage "
            f"{ltt['coverage']:.1%}, error among accepted {ltt['selective_risk']:.3f} (α={ltt['alpha']}, δ={ltt['delta']})."
        )


def _features(collection: foc.SampleCollection) -> tuple[list[str], np.ndarray, list[str], np.ndarray, list[str | None]]:
    """(ids, gate feature matrix, names, correct, sequence groups) for samples with predictions and labels.

    ``collection`` holds one model's predictions, so every sample has the same feature names."""
    ids, feats, pred, truth, groups = collection.exists("gate_features").exists("ground_truth").values(
        ["id", "gate_features", "stage1.label", "ground_truth.label", "sequence_group"]
    )
    if not ids:
        return [], np.zeros((0, 0)), [], np.zeros(0, dtype=bool), []
    names = sorted(feats[0])
    x = _matrix(ids, feats, names)
    correct = np.array([p == t for p, t in zip(pred, truth, strict=True)], dtype=bool)
    return ids, x, names, correct, groups


def _matrix(ids: list[str], feats: list[dict[str, float]], names: list[str]) -> np.ndarray:
    for sample_id, f in zip(ids, feats, strict=True):
        if missing := [n for n in names if n not in f]:
            raise InputError(
                f"Sample {sample_id} has gate features without {missing} although it is from the same model; "
                "predict it again (`curation predict`)."
            )
    return np.array([[f[n] for n in names] for f in feats], dtype=np.float64).reshape(len(ids), len(names))


def write_routing_labels(collection: foc.SampleCollection) -> int:
    """``stage1_correct`` on held-out splits (val, calib, test); returns how many were written."""
    held_out = collection.match({"split": {"$in": [schema.Split.VAL, schema.Split.CALIB, schema.Split.TEST]}})
    held_out = held_out.match_tags(schema.TAG_LABEL_CONFLICT, bool=False).exists("stage1").exists("ground_truth")
    ids, pred, truth = held_out.values(["id", "stage1.label", "ground_truth.label"])
    correct = {sid: p == t for sid, p, t in zip(ids, pred, truth, strict=True)}
    store.set_values_by_id(store.root_dataset(collection), "stage1_correct", correct)
    return len(ids)


def gate_model_version(dataset: Any) -> str | None:
    """The model whose predictions the gate is fit for: the one that predicted val.

    Raises:
        InputError: val holds predictions of several models (predict val with one model first).
    """
    val = dataset.match({"split": schema.Split.VAL}).exists("gate_features")
    versions = sorted(set(val.values("model_version")), key=str)
    if len(versions) > 1:
        counts = val.count_values("model_version")
        which = ", ".join(f"{v} ({counts[v]} samples)" for v in versions)
        raise InputError(
            f"Val holds predictions of several models: {which}; the gate is fit for one. "
            "Predict val with one model (`curation predict --split val`) first."
        )
    return versions[0] if versions else None


@dataclass(frozen=True, eq=False)
class FittedGate:
    gate: gate.FailureGate
    names: list[str]
    metrics: gate.GateMetrics  # out-of-fold on val
    oof_risk: np.ndarray  # [n_val]
    ltt: dict[str, Any]


def fit_gate_arrays(
    x_val: np.ndarray,
    correct_val: np.ndarray,
    groups_val: list[str | None],
    x_cal: np.ndarray,
    correct_cal: np.ndarray,
    *,
    names: list[str],
    config: gate.GateConfig = gate.GateConfig(),
    alpha: float = 0.1,
    delta: float = 0.1,
    n_splits: int = 5,
) -> FittedGate:
    """Pure: gate fit on val, out-of-fold val metrics, Learn-then-Test on calib (grid and start planned on val)."""
    group_ids = [g or str(i) for i, g in enumerate(groups_val)]
    n_wrong = int((~correct_val.astype(bool)).sum())
    # Folds need every class (right/wrong) and distinct sequence groups in each.
    n_splits = min(n_splits, len(set(group_ids)), n_wrong, len(correct_val) - n_wrong)
    if n_splits < 2:
        raise InputError(
            f"The gate needs val samples with both right and wrong Stage-1 answers across ≥ 2 sequence groups; "
            f"found {len(correct_val)} samples, {n_wrong} wrong, {len(set(group_ids))} groups."
        )

    def fit_predict_wrong(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray) -> np.ndarray:
        # crossfit passes the label it stratifies on; ours is "stage-1 wrong".
        return gate.fit_gate(x_tr, ~y_tr.astype(bool), feature_names=names, config=config).predict_risk(x_te)

    oof = crossfit.out_of_fold_correct(
        x_val, (~correct_val).astype(int), fit_predict_wrong, n_splits=n_splits, seed=config.seed,
        groups=group_ids,
    )
    fitted = gate.fit_gate(x_val, correct_val, feature_names=names, config=config)
    if len(correct_cal):
        grid = risk.threshold_grid(fitted.predict_risk(x_val, feature_names=names))
        start = risk.planned_start(grid, oof.probability, correct_val, n_calib=len(correct_cal), alpha=alpha)
        ltt = risk.learn_then_test(
            fitted.predict_risk(x_cal, feature_names=names), correct_cal, alpha=alpha, delta=delta,
            thresholds=grid[start:], n_starts=1,
        ).to_dict()
    else:
        ltt = {"threshold": None, "reason": "no labelled, predicted calib samples"}
    return FittedGate(fitted, names, gate.gate_metrics(oof.probability, correct_val), oof.probability, ltt)


def fit_and_apply_gate(
    dataset: Any,
    *,
    runs_root: Path,
    config: GateJobConfig = GateJobConfig(),
    model_version: str | None = None,
) -> GateReport:
    """Fit the gate on val, run Learn-then-Test on calib, and write ``failure_risk``.

    Args:
        runs_root: the gate and its plot go to ``<runs_root>/gates/<model version>`` (:func:`gate_dir`).
        model_version: the model whose predictions the gate is for (default: the one that
            predicted val, :func:`gate_model_version`). Samples predicted by another model get
            ``failure_risk`` None: their features are not this gate's.
    """
    from curation.stage1.gate_plots import plot_risk_coverage

    write_routing_labels(dataset)
    version = model_version if model_version is not None else gate_model_version(dataset)
    current = dataset.match({"model_version": version})
    clean = current.match_tags(schema.TAG_LABEL_CONFLICT, bool=False)
    _, x_val, names, correct_val, groups = _features(clean.match({"split": schema.Split.VAL}))
    _, x_cal, _, correct_cal, _ = _features(clean.match({"split": schema.Split.CALIB}))
    fitted = fit_gate_arrays(
        x_val, correct_val, groups, x_cal, correct_cal, names=names, config=config.gate, alpha=config.alpha, delta=config.delta,
        n_splits=config.n_splits,
    )  # fmt: skip
    out_dir = gate_dir(runs_root, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_path = plot_risk_coverage(
        gate.risk_coverage_curve(fitted.oof_risk, correct_val), out_dir / "risk_coverage.png", alpha=config.alpha
    )
    gate_path = out_dir / GATE_FILE
    payload = {"gate": fitted.gate.to_dict(), "ltt": fitted.ltt, "alpha": config.alpha, "delta": config.delta}
    gate_path.write_text(json.dumps(payload, indent=2, default=registry.json_default) + "\n")

    ids, feats = current.exists("gate_features").values(["id", "gate_features"])
    risks = dict(zip(ids, fitted.gate.predict_risk(_matrix(ids, feats, names), feature_names=names).tolist()))
    stale = dataset.exists("failure_risk").match({"model_version": {"$ne": version}}).values("id")
    store.set_values_by_id(dataset, "failure_risk", {**dict.fromkeys(stale), **risks})
    m = fitted.metrics
    report = GateReport(
        n_val=len(correct_val),
        n_calib=len(correct_cal),
        metrics={"auroc": m.auroc, "fpr_at_95_tpr": m.fpr_at_95_tpr, "aurc": m.aurc},
        ltt={k: v for k, v in fitted.ltt.items() if k in LTT_SUMMARY_KEYS},
        gate_path=str(gate_path),
        plot_path=str(plot_path),
    )
    run_id = store.record_run(dataset, "gate", asdict(report), fields=["failure_risk", "stage1_correct"])
    return GateReport(**{**asdict(report), "run_id": run_id})


LTT_SUMMARY_KEYS = ("threshold", "coverage", "selective_risk", "n_accepted", "n_errors", "alpha", "delta", "reason")
