"""Failure gate: predict when stage-1 is wrong, and measure how well that prediction ranks mistakes.

Stage-1's own probability says how sure it is, not how often it is wrong when it says so on this
kind of image; a small model on the multi-view gate features (peak, spread, entropy, flip
consistency...) separates confident-and-right from confident-and-wrong much better. Its output,
``failure_risk`` = P(stage-1 wrong), drives routing (:mod:`curation.stage1.risk`) and hard-case
mining (:mod:`curation.stage1.hardness`). The gate is trained with scikit-learn but stored and
applied as plain numpy parameters, so it saves as JSON next to the model version (no pickle) and
runs without scikit-learn in the exported bundle.

Example:
    >>> import numpy as np
    >>> from curation.stage1.gate import GateConfig, fit_gate, gate_metrics
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 2)); correct = x[:, 0] + 0.5 * rng.normal(size=400) < 1.0
    >>> gate = fit_gate(x, correct, feature_names=["margin", "var"], config=GateConfig())
    >>> risk = gate.predict_risk(x)
    >>> gate_metrics(risk, correct).auroc > 0.8
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from curation.errors import ConfigError, InputError, suggest
from curation.stage1.arrays import as_bool_array, as_float_array, check_same_length
from curation.typed_config import setting

GATE_FORMAT = "failure_gate/1"


@dataclass(frozen=True)
class GateConfig:
    """How the failure gate is fit.

    Attributes:
        kind: ``logistic`` (default: few parameters, hard to overfit on a few hundred mistakes) or
            ``mlp`` (one or more ReLU layers, for many mistakes with non-linear structure).
        c: inverse L2 strength of the logistic regression.
        hidden: hidden layer widths of the MLP.
        l2: L2 penalty of the MLP.
        max_iter: optimiser iterations.
        seed: makes MLP initialisation reproducible.
    """

    kind: Literal["logistic", "mlp"] = setting("logistic", help="Gate model: logistic or mlp.", choices=("logistic", "mlp"))
    c: float = 1.0
    hidden: tuple[int, ...] = (16,)
    l2: float = 1e-3
    max_iter: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("logistic", "mlp"):
            hint = suggest(str(self.kind), ["logistic", "mlp"])
            raise ConfigError(f"`kind` must be one of logistic, mlp; got {self.kind!r}.{hint}")
        if not self.c > 0 or not self.l2 >= 0:
            raise ConfigError(f"`c` must be > 0 and `l2` ≥ 0; got c={self.c!r}, l2={self.l2!r}.")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"`hidden` must list positive layer widths; got {self.hidden!r}.")
        if int(self.max_iter) < 1:
            raise ConfigError(f"`max_iter` must be ≥ 1; got {self.max_iter!r}.")


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class FailureGate:
    """A fitted gate: standardisation plus dense layers (ReLU between, sigmoid out).

    Attributes:
        feature_names: column order the gate expects.
        mean, scale: standardisation applied to the features before the layers.
        weights, biases: one entry per layer; a logistic gate has a single [d, 1] layer.
        config: how it was fit (kept for the model card).
    """

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    config: GateConfig = field(default_factory=GateConfig)

    def predict_risk(self, features: ArrayLike, *, feature_names: list[str] | None = None) -> np.ndarray:
        """Return ``failure_risk`` = P(stage-1 wrong) for each row of ``features`` [n, d].

        When ``feature_names`` is given, columns are reordered to the gate's order by name, so a
        feature table with extra or shuffled columns still works.
        """
        x = as_float_array(features, name="features", ndim=2)
        if feature_names is not None:
            x = x[:, _column_order(list(feature_names), self.feature_names, width=x.shape[1])]
        elif x.shape[1] != len(self.feature_names):
            raise InputError(
                f"The 'features' array must have {len(self.feature_names)} columns "
                f"({', '.join(self.feature_names)}). Got {x.shape[1]} instead."
            )
        h = (x - self.mean) / self.scale  # [n, d]
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b  # [n, width_i]
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return _sigmoid(h[:, 0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters (floats and lists only)."""
        config = asdict(self.config)
        config["hidden"] = list(config["hidden"])
        return {
            "format": GATE_FORMAT,
            "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "layers": [
                {"weights": w.tolist(), "bias": b.tolist()} for w, b in zip(self.weights, self.biases, strict=True)
            ],
            "config": config,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FailureGate:
        """Rebuild a gate saved with :meth:`to_dict`, checking format and shapes."""
        if data.get("format") != GATE_FORMAT:
            raise InputError(f"Not a saved failure gate: `format` is {data.get('format')!r}, expected {GATE_FORMAT!r}.")
        try:
            config = dict(data["config"])
            config["hidden"] = tuple(config["hidden"])
            names = tuple(str(n) for n in data["feature_names"])
            weights = tuple(np.asarray(layer["weights"], dtype=np.float64) for layer in data["layers"])
            biases = tuple(np.asarray(layer["bias"], dtype=np.float64) for layer in data["layers"])
            gate = cls(
                feature_names=names,
                mean=np.asarray(data["mean"], dtype=np.float64),
                scale=np.asarray(data["scale"], dtype=np.float64),
                weights=weights,
                biases=biases,
                config=GateConfig(**config),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"Saved failure gate is incomplete or malformed: {e!r}.") from None
        widths = [len(names)] + [w.shape[1] if w.ndim == 2 else -1 for w in weights]
        shapes_ok = (
            gate.mean.shape == gate.scale.shape == (len(names),)
            and all(w.ndim == 2 and w.shape[0] == widths[i] for i, w in enumerate(weights))
            and all(b.shape == (w.shape[1],) for w, b in zip(weights, biases, strict=True))
            and widths[-1] == 1
        )
        if not shapes_ok:
            raise InputError(f"Saved failure gate has inconsistent layer shapes for {len(names)} features.")
        return gate


def fit_gate(
    features: ArrayLike,
    correct: ArrayLike,
    *,
    feature_names: list[str],
    config: GateConfig = GateConfig(),
) -> FailureGate:
    """Fit P(stage-1 wrong) on gate features and out-of-fold routing labels.

    Args:
        features: gate features [n, d] computed on the validation split.
        correct: ``stage1_correct`` routing labels from out-of-fold predictions
            (:func:`curation.stage1.crossfit.out_of_fold_correct`), never in-sample ones.
        feature_names: one name per column; stored so later tables are matched by name.
        config: model kind and regularisation.
    """
    x = as_float_array(features, name="features", ndim=2)
    wrong = ~as_bool_array(correct, name="correct")
    check_same_length(features=x, correct=wrong)
    if len(feature_names) != x.shape[1] or len(set(feature_names)) != len(feature_names):
        raise InputError(
            f"The 'feature_names' list must name each of the {x.shape[1]} columns once. "
            f"Got {list(feature_names)} instead."
        )
    n_wrong = int(wrong.sum())
    if n_wrong == 0 or n_wrong == len(wrong):
        raise InputError(
            "The gate needs both right and wrong stage-1 predictions to learn from; "
            f"got {n_wrong} wrong of {len(wrong)}."
        )
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature carries no signal; keep it inert
    z = (x - mean) / scale
    if config.kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=config.c, max_iter=config.max_iter).fit(z, wrong)
        weights, biases = (model.coef_.T.copy(),), (model.intercept_.copy(),)
    else:
        from sklearn.neural_network import MLPClassifier

        model = MLPClassifier(
            hidden_layer_sizes=tuple(int(h) for h in config.hidden),
            alpha=config.l2,
            max_iter=config.max_iter,
            random_state=config.seed,
        ).fit(z, wrong)
        weights = tuple(w.copy() for w in model.coefs_)
        biases = tuple(b.copy() for b in model.intercepts_)
    return FailureGate(
        feature_names=tuple(feature_names), mean=mean, scale=scale, weights=weights, biases=biases, config=config
    )


# Metrics ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class RiskCoverage:
    """Risk-coverage curve: accept samples with ``failure_risk ≤ threshold``, lowest risk first.

    Attributes:
        threshold: distinct risk values, ascending (one point per value, so ties never depend on
            sample order).
        coverage: fraction of samples accepted at each threshold.
        selective_risk: fraction of the accepted samples that stage-1 got wrong.
    """

    threshold: np.ndarray
    coverage: np.ndarray
    selective_risk: np.ndarray


@dataclass(frozen=True)
class GateMetrics:
    """How well ``failure_risk`` ranks stage-1's mistakes.

    Attributes:
        auroc: P(a random mistake has higher risk than a random correct sample); NaN when only one
            kind is present.
        fpr_at_95_tpr: fraction of correct samples flagged when the threshold flags ≥ 95% of the
            mistakes; NaN when only one kind is present.
        aurc: area under the risk-coverage curve; lower is better. A random ranking scores about
            the error rate e, a perfect one e + (1 − e)·ln(1 − e) ≈ e²/2.
        n: samples evaluated.
        n_errors: stage-1 mistakes among them.
    """

    auroc: float
    fpr_at_95_tpr: float
    aurc: float
    n: int
    n_errors: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def risk_coverage_curve(risk: ArrayLike, correct: ArrayLike) -> RiskCoverage:
    """Selective risk at every distinct risk threshold (accept ``risk ≤ threshold``)."""
    r, wrong = _risk_and_wrong(risk, correct)
    if r.size == 0:
        empty = np.empty(0)
        return RiskCoverage(threshold=empty, coverage=empty, selective_risk=empty)
    order = np.argsort(r, kind="stable")
    r_sorted = r[order]
    errors = np.cumsum(wrong[order])
    last_of_value = np.r_[r_sorted[1:] != r_sorted[:-1], True]  # end of each tie group
    accepted = np.flatnonzero(last_of_value) + 1
    return RiskCoverage(
        threshold=r_sorted[last_of_value],
        coverage=accepted / r.size,
        selective_risk=errors[accepted - 1] / accepted,
    )


def aurc(curve: RiskCoverage) -> float:
    """Area under the risk-coverage curve as a right-endpoint step integral over coverage.

    Without ties this is the usual mean of the selective risk after accepting 1, 2, ..., n samples
    (Geifman et al. 2019); tied risks enter as one step, so the value does not depend on order.
    """
    if curve.coverage.size == 0:
        return float("nan")
    steps = np.diff(curve.coverage, prepend=0.0)
    return float(np.sum(steps * curve.selective_risk))


def gate_metrics(risk: ArrayLike, correct: ArrayLike) -> GateMetrics:
    """AUROC, FPR at 95% TPR and AURC of ``risk`` for detecting stage-1 mistakes.

    Example:
        >>> gate_metrics([0.1, 0.2, 0.3, 0.4], [True, False, True, False]).auroc
        0.75
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    r, wrong = _risk_and_wrong(risk, correct)
    if r.size == 0:
        raise InputError("Gate metrics need at least one sample; got an empty 'risk' array.")
    n_errors = int(wrong.sum())
    if 0 < n_errors < r.size:
        auroc = float(roc_auc_score(wrong, r))
        fpr, tpr, _ = roc_curve(wrong, r, drop_intermediate=False)
        fpr95 = float(fpr[np.argmax(tpr >= 0.95)])
    else:
        auroc = fpr95 = float("nan")
    return GateMetrics(
        auroc=auroc, fpr_at_95_tpr=fpr95, aurc=aurc(risk_coverage_curve(r, ~wrong)), n=int(r.size), n_errors=n_errors
    )


# Helpers ------------------------------------------------------------------------------------


def _risk_and_wrong(risk: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    r = as_float_array(risk, name="risk")
    wrong = ~as_bool_array(correct, name="correct")
    check_same_length(risk=r, correct=wrong)
    return r, wrong


def _column_order(given: list[str], wanted: tuple[str, ...], *, width: int) -> list[int]:
    if len(given) != width:
        raise InputError(
            f"The 'feature_names' list must name the {width} feature columns. Got {len(given)} names instead."
        )
    missing = [name for name in wanted if name not in given]
    if missing:
        raise InputError(
            f"The gate needs feature `{missing[0]}`, which the feature table lacks.{suggest(missing[0], given)} "
            f"Needed: {', '.join(wanted)}."
        )
    return [given.index(name) for name in wanted]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|
