"""Risk-coverage plot for the failure gate, kept apart from the math that produces the curve.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no display needed), so it is
safe in workers, delegated operators and tests.

Example:
    >>> import tempfile, pathlib
    >>> from curation.stage1.gate import risk_coverage_curve
    >>> from curation.stage1.gate_plots import plot_risk_coverage
    >>> curve = risk_coverage_curve([0.1, 0.2, 0.3, 0.4], [True, False, True, False])
    >>> out = plot_risk_coverage(curve, pathlib.Path(tempfile.mkdtemp()) / "rc.png", alpha=0.1)
    >>> out.suffix
    '.png'
"""

from __future__ import annotations

from pathlib import Path

from curation.stage1.gate import RiskCoverage


def plot_risk_coverage(
    curve: RiskCoverage,
    path: str | Path,
    *,
    alpha: float | None = None,
    operating_point: tuple[float, float] | None = None,
    title: str = "Failure gate: risk vs coverage",
) -> Path:
    """Write the risk-coverage curve as a PNG and return its path.

    Args:
        curve: from :func:`curation.stage1.gate.risk_coverage_curve`.
        path: PNG file to write; parent folders are created.
        alpha: target error rate, drawn as a horizontal line.
        operating_point: (coverage, selective risk) chosen by Learn-then-Test, drawn as a dot.
        title: figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.step(curve.coverage, curve.selective_risk, where="post", label="selective risk")
    if alpha is not None:
        ax.axhline(alpha, color="tab:red", linestyle="--", label=f"target α = {alpha:g}")
    if operating_point is not None:
        ax.plot(*operating_point, "o", color="tab:green", label="chosen threshold")
    ax.set(xlabel="coverage (fraction accepted)", ylabel="error among accepted", title=title, xlim=(0, 1))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
