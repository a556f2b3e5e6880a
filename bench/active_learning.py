"""Benchmark (issue 7, "Does mining help?"): simulated labeling rounds on the demo corpus.

Labels of the pool stay hidden until a strategy "labels" a sample. Three strategies get the same
budget (``--seed-set`` labelled at random, then ``--rounds`` × ``--budget`` picks) and the head is
retrained from scratch on the labelled set after every round:

- ``random``: uniform picks from the unlabelled pool;
- ``uncertainty``: the ``budget`` pool samples closest to the decision threshold;
- ``mining``: the platform's selection as :func:`curation.mine.job.mine` does it:
  :func:`curation.stage1.hardness.hardness_scores` (default :class:`MiningConfig` weights, uncertainty centred
  on the decision threshold), ``min_hardness`` filter, ``quota × shortlist_factor`` shortlist and
  :func:`curation.stage1.hardness.diverse_select` on the global-view CLS embeddings (the
  ``stage1_embedding`` field's content). ``failure_risk`` comes from the platform's gate
  (:func:`curation.stage1.gate.fit_gate`), refit every round on val, where the head never trained, so
  its routing labels are out-of-sample. If fewer than ``budget`` pass ``min_hardness`` the rest is
  filled by score so the budget stays equal.

What the mining terms are here (honest limits of the simulation): the pool is unlabelled, so
``mistakenness`` is NaN (as in production for samples without truth); the demo model has one view
(``grid: 0``), so ``view_disagreement`` is NaN and the gate sees only functions of p.

The pool (``--pool-mix``): ``stream`` (default) is what a miner's own footage looks like and what
daily mining runs over: 15% roadwork, a quarter of the negatives orange look-alikes, the rest plain
streets. ``validator`` is the validators' mix (half roadwork, most negatives look-alikes), the same
as val and test. Val and test always follow the validators' mix: that is what pays.

Backbone (``--backbone``, default ``efficientnet-lite0``, issue 17): the preset's real ImageNet
EfficientNet-Lite0 weights, loaded offline and used frozen; one global view at ``--view-size`` (224),
max aggregation. Level-0 features of the pool, a validation set and a test set are cached once (one
forward each); per seed and strategy only the head is retrained (``train_head`` on the cached
features). MCC on the test set uses the threshold that maximises MCC on the validation set (both
labelled, disjoint from the pool). ``--backbone tiny-demo`` is the old weak stand-in: trained once
from scratch on ``--backbone-train`` separate labelled queries, then frozen.

Verdict (pre-declared in issue 17, fixed before the first run on this backbone; the pool, val, test,
budget and head settings are the ones this file had for issue 7, and are not retuned): mining passes
when BOTH hold:

1. AUC: mining's area under the learning curve (mean test MCC over rounds 0..R) is higher than
   random's in at least 80% of the seeds (8 of the default 10);
2. labels-to-reach: on the seed-mean curves, mining reaches random's final-round test MCC with at
   most 70% of random's final label count (``--seed-set + R × --budget``; 210 of 300 by default).
   Labels-to-reach is read off mining's mean curve by linear interpolation in (labels, MCC) between
   consecutive rounds, at the first round whose mean MCC reaches the target; if round 0 already
   reaches it the count is the seed set; if no round reaches it, it is "not reached" (criterion
   fails). The same number per seed (mining's curve of that seed against random's final MCC of that
   seed) is reported alongside, not used for the verdict.

The final-round win count (issue 7's old criterion) and uncertainty's numbers are reported too.

Outputs (``--out``, default ``bench/results``): ``active_learning.csv`` (test MCC per seed, strategy
and round, the raw curves), ``active_learning.md`` (the table and the verdict) and
``active_learning.png`` (mean ± sd per strategy against labels), drawn from the CSV alone
(``--plot-only`` redraws it without recomputing).

Usage:
    python bench/active_learning.py                        # the issue's run (Lite0, 10 seeds)
    python bench/active_learning.py --pool-mix validator   # the pool drawn like val/test
    python bench/active_learning.py --no-gate              # mining without the failure-risk term
    python bench/active_learning.py --backbone tiny-demo --seeds 5   # issue 7's weak from-scratch backbone
    python bench/active_learning.py --backbone /models/dinov3-vits16   # frozen pretrained DINOv3 weights
    python bench/active_learning.py --plot-only            # redraw the PNG from bench/results/active_learning.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.demo.corpus import CorpusSpec, write_corpus  # noqa: E402
from curation.mine.job import MiningConfig  # noqa: E402
from curation.stage1.hardness import hardness_scores  # noqa: E402
from curation.stage1.cache import CacheSpec, FeatureCache, cache_features  # noqa: E402
from curation.stage1.demo_training import train_demo_model  # noqa: E402
from curation.stage1.features import feature_names, gate_features  # noqa: E402
from curation.stage1.gate import fit_gate  # noqa: E402
from curation.stage1.hardness import diverse_select  # noqa: E402
from curation.stage1.metrics import mcc  # noqa: E402
from curation.stage1.model import (
    Stage1Config,  # noqa: E402
    Stage1Model,  # noqa: E402
)
from curation.stage1.train import TrainConfig, train_head  # noqa: E402
from curation.stage1.views import ViewPolicy  # noqa: E402

STRATEGIES = ("random", "uncertainty", "mining")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet-lite0",
                    help="a preset name (models/presets; default efficientnet-lite0, real ImageNet weights), a local "
                         "DINOv3 directory or Hub id, used frozen at --view-size; or tiny-demo (trained here from "
                         "scratch on --backbone-train queries)")
    ap.add_argument("--view-size", type=int, default=224, help="global-view side for a pretrained --backbone")
    ap.add_argument("--backbone-train", type=int, default=1500, help="labelled queries that train the frozen backbone")
    ap.add_argument("--backbone-epochs", type=int, default=8)
    ap.add_argument("--pool", type=int, default=1500)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--test", type=int, default=400)
    ap.add_argument("--seed-set", type=int, default=50, help="random labelled start per seed")
    ap.add_argument("--budget", type=int, default=50, help="labels per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--head-epochs", type=int, default=40)
    ap.add_argument("--head-lr", type=float, default=1e-2)
    ap.add_argument("--pool-mix", choices=("stream", "validator"), default="stream",
                    help="stream: a dashcam-like pool (--stream-positive roadwork, --stream-hard of the negatives "
                         "orange look-alikes, the rest plain streets); validator: the validators' mix (half roadwork, "
                         "80%% of negatives look-alikes), like val and test")
    ap.add_argument("--stream-positive", type=float, default=0.15)
    ap.add_argument("--stream-hard", type=float, default=0.25)
    ap.add_argument("--no-gate", action="store_true", help="mining without the failure-risk term (entropy only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--auc-share", type=float, default=0.8, help="criterion 1: share of seeds where mining's AUC beats random's")
    ap.add_argument("--reach", type=float, default=0.7, help="criterion 2: mining reaches random's final MCC with at most this share of its labels")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="folder for the CSV, markdown and PNG")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from --out/active_learning.csv and exit")
    ap.add_argument("--workdir", default=None, help="corpus + cache folder (default: a temporary one)")
    return ap.parse_args()


def load_corpus(root: Path, spec: CorpusSpec) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Write demo queries; return paths, labels, sha256 hashes and an is-orange-look-alike flag per image."""
    write_corpus(root, spec)
    with (root / "truth.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == spec.n_queries and {r["source"] for r in rows} == {"queries"}
    return (
        [str(root / r["path"]) for r in rows],
        np.array([int(r["is_roadwork"]) for r in rows]),
        [r["sha256"] for r in rows],
        np.array([r["is_roadwork"] == "0" and r["hn_category"] != "" for r in rows]),
    )


def queries(n: int, seed: int, **mix: float) -> CorpusSpec:
    return CorpusSpec(n_natix_train=0, n_natix_test=0, n_roadwork=0, n_roboflow=0, n_queries=n, seed=seed, **mix)


def fit_head(config: Stage1Config, backbone, feats: torch.Tensor, labels: np.ndarray, *, seed: int, args) -> Stage1Model:
    """A fresh head on the frozen backbone, trained on the labelled features [n, V, 2D]."""
    model = Stage1Model.build(config, backbone=backbone, seed=seed)
    config = TrainConfig(
        mode="head", epochs=args.head_epochs, batch_size=32, lr=args.head_lr, weight_decay=0.01,
        class_weights="balanced", schedule="cosine", seed=seed,
    )
    train_head(feats, torch.as_tensor(labels), config, model=model)
    return model


@torch.no_grad()
def probs(model: Stage1Model, feats: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(model.head_forward(feats.float())[1]).numpy().astype(np.float64)


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold (midpoints of sorted unique scores) with the highest MCC on (y, p)."""
    u = np.unique(p)
    candidates = np.concatenate([[0.5], (u[1:] + u[:-1]) / 2]) if len(u) > 1 else np.array([0.5])
    scores = [mcc(y, (p >= t).astype(int)) for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def fit_round_gate(p_val: np.ndarray, y_val: np.ndarray, threshold: float):
    """The platform's failure gate, fit on val: the head never saw val, so its routing labels are out-of-sample."""
    names = list(feature_names(False))
    x = gate_features(p_val[:, None], p_val, threshold=threshold, top_k=1)
    return fit_gate(x, (p_val >= threshold) == (y_val == 1), feature_names=names)


def select(strategy: str, p: np.ndarray, threshold: float, risk: np.ndarray | None, pool_emb: np.ndarray,
           unlabeled: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Pool indices to label next (from ``unlabeled``, whose probabilities are ``p``); labels are not read here."""
    if strategy == "random":
        return rng.choice(unlabeled, size=budget, replace=False)
    if strategy == "uncertainty":
        return unlabeled[np.argsort(np.abs(p - threshold), kind="stable")[:budget]]
    cfg = MiningConfig(quota=budget)
    nan = np.full(len(p), np.nan)
    # Unlabelled ⇒ truth NaN; one view ⇒ no view variance; risk from the round's gate (or NaN).
    scores = hardness_scores(p, nan if risk is None else risk, nan, nan, weights=cfg.weights, threshold=threshold)
    passed = np.flatnonzero(scores >= cfg.min_hardness)
    shortlist = passed[np.argsort(-scores[passed], kind="stable")][: cfg.quota * cfg.shortlist_factor]
    picked = list(shortlist[diverse_select(scores[shortlist], pool_emb[unlabeled[shortlist]], cfg.quota,
                                           shortlist_factor=-(-len(shortlist) // cfg.quota), diversity=cfg.diversity)]) if len(shortlist) else []
    if len(picked) < budget:  # keep the budget equal: fill by score
        rest = [i for i in np.argsort(-scores, kind="stable") if i not in set(picked)]
        picked += rest[: budget - len(picked)]
    return unlabeled[np.asarray(picked, dtype=int)]


def main() -> None:
    args = parse_args()
    if args.plot_only:
        print(plot_curves(Path(args.out) / "active_learning.csv", Path(args.out) / "active_learning.png", reach=args.reach,
                          backbone=args.backbone))
        return
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="active_learning_"))
    pretrained = args.backbone != "tiny-demo"
    n_bb, n_pool, n_val, n_test = 0 if pretrained else args.backbone_train, args.pool, args.val, args.test
    stream = args.pool_mix == "stream"
    images, labels, hashes, kinds = load_corpus(work / "demo", queries(n_bb + n_val + n_test + (0 if stream else n_pool), seed=0))
    bb, val, test, pool = np.split(np.arange(len(labels)), np.cumsum([n_bb, n_val, n_test]))
    if stream:  # a second corpus (another seed: no image shared with val/test) in the stream mix
        stream_spec = queries(n_pool, seed=1, query_positive=args.stream_positive, query_look_alike=args.stream_hard)
        pool_images, y_pool, pool_hashes, look_alike = load_corpus(work / f"stream_{args.stream_positive}_{args.stream_hard}", stream_spec)
    else:
        pool_images, y_pool, pool_hashes, look_alike = [images[i] for i in pool], labels[pool], [hashes[i] for i in pool], kinds[pool]
    y_val, y_test = labels[val], labels[test]  # y_pool is read only for labelled picks
    print(f"corpus ({time.perf_counter() - began:.0f} s): pool = {args.pool_mix} mix, {n_pool} images, positive share "
          f"{y_pool.mean():.2f}, look-alikes {look_alike.mean():.2f}"
          + f"; val {y_val.mean():.2f} and test {y_test.mean():.2f} positive (validator mix)")

    t = time.perf_counter()
    if pretrained:  # real weights (or a random preset, said as such): loaded, never trained here
        model = Stage1Model.build(Stage1Config(backbone=args.backbone, views=ViewPolicy(grid=0, size=args.view_size), aggregator="max"))
        random = " RANDOM WEIGHTS: a smoke test, not evidence" if args.backbone == "tiny-random" else ""
        print(f"backbone: {args.backbone} loaded ({time.perf_counter() - t:.0f} s), frozen, global view at {args.view_size} px{random}")
    else:
        model, _ = train_demo_model([images[i] for i in bb], labels[bb].tolist(), [hashes[i] for i in bb],
                                    seed=0, epochs=args.backbone_epochs)
        print(f"backbone: tiny-demo trained on {n_bb} separate queries, {args.backbone_epochs} epochs ({time.perf_counter() - t:.0f} s), then frozen")
    backbone = model.backbone.eval().requires_grad_(False)
    head_config = model.config.replace(trained=False)  # each round's head starts fresh on this backbone

    t = time.perf_counter()
    cache = FeatureCache(work / "cache", CacheSpec.for_model(model, validator_level=0))
    paths = pool_images + [images[i] for i in np.concatenate([val, test])]
    keys = pool_hashes + [hashes[i] for i in np.concatenate([val, test])]
    feats = cache_features(paths, keys, model, cache, augmentations=1, seed=7).features[:, 0]  # [N, V=1, 2D]
    pool_feats, val_feats, test_feats = torch.split(feats, [n_pool, n_val, n_test])
    pool_emb = pool_feats[:, 0, : model.hidden_size].float().numpy().astype(np.float64)  # global-view CLS (stage1_embedding)
    print(f"features: {len(paths)} level-0 queries cached ({time.perf_counter() - t:.0f} s)")

    full = fit_head(head_config, backbone, pool_feats, y_pool, seed=0, args=args)  # reference only: every pool label
    ceiling = mcc(y_test, (probs(full, test_feats) >= best_threshold(y_val, probs(full, val_feats))).astype(int))
    print(f"reference: head on all {n_pool} pool labels -> test MCC {ceiling:.3f}")

    rounds = args.rounds
    curves = {s: np.zeros((args.seeds, rounds + 1)) for s in STRATEGIES}
    picked_pos = {s: np.zeros(args.seeds) for s in STRATEGIES}
    picked_look = {s: np.zeros(args.seeds) for s in STRATEGIES}
    overlap: list[int] = []
    t = time.perf_counter()
    for seed in range(args.seeds):
        start = np.random.default_rng(1000 + seed).choice(n_pool, size=args.seed_set, replace=False)
        for strategy in STRATEGIES:
            rng = np.random.default_rng(2000 + seed)
            labeled = start.copy()
            for r in range(rounds + 1):
                head = fit_head(head_config, backbone, pool_feats[labeled], y_pool[labeled], seed=seed, args=args)
                p_val = probs(head, val_feats)
                threshold = best_threshold(y_val, p_val)
                curves[strategy][seed, r] = mcc(y_test, (probs(head, test_feats) >= threshold).astype(int))
                if r == rounds:
                    break
                unlabeled = np.setdiff1d(np.arange(n_pool), labeled)
                p_un = probs(head, pool_feats[unlabeled])
                risk = None
                if strategy == "mining" and not args.no_gate:
                    gate = fit_round_gate(p_val, y_val, threshold)
                    risk = gate.predict_risk(gate_features(p_un[:, None], p_un, threshold=threshold, top_k=1))
                picks = select(strategy, p_un, threshold, risk, pool_emb, unlabeled, args.budget, rng)
                if strategy == "mining" and r == 0:  # round 0's head is the same for every strategy
                    overlap.append(len(np.intersect1d(picks, select("uncertainty", p_un, threshold, None, pool_emb,
                                                                      unlabeled, args.budget, rng))))
                assert len(picks) == args.budget and not np.isin(picks, labeled).any()
                labeled = np.concatenate([labeled, picks])  # labels revealed now
            picked_pos[strategy][seed] = y_pool[labeled[args.seed_set:]].mean()
            picked_look[strategy][seed] = look_alike[labeled[args.seed_set:]].mean()
        print(f"seed {seed} done ({time.perf_counter() - t:.0f} s)", flush=True)

    ns = args.seed_set + args.budget * np.arange(rounds + 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "active_learning.csv"
    write_curves(csv_path, curves, ns)
    report = verdict_report(curves, ns, args, picked_pos=picked_pos, picked_look=picked_look, overlap=overlap,
                            ceiling=ceiling, n_val=n_val, n_test=n_test, n_pool=n_pool)
    wall = time.perf_counter() - began
    report += (f"\nRun: `{' '.join([Path(sys.argv[0]).name] + sys.argv[1:]) or 'active_learning.py'}`, backbone {args.backbone} "
               f"({'frozen, ' + str(args.view_size) + ' px global view' if pretrained else 'tiny-demo trained from scratch'}), "
               f"wall {wall:.0f} s, torch threads {torch.get_num_threads()}, load average "
               f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}.\n")
    (out / "active_learning.md").write_text(report)
    print("\n" + report)
    png = plot_curves(csv_path, out / "active_learning.png", reach=args.reach, backbone=args.backbone)
    print(f"wrote {csv_path}, {out / 'active_learning.md'}, {png}")


def labels_to_reach(ns: np.ndarray, curve: np.ndarray, target: float) -> float:
    """Labels at which ``curve`` (MCC at label counts ``ns``) first reaches ``target``, linearly interpolated
    between consecutive rounds; ``ns[0]`` if round 0 already reaches it; ``inf`` if no round does."""
    if curve[0] >= target:
        return float(ns[0])
    for r in range(1, len(ns)):
        if curve[r] >= target:
            return float(ns[r - 1] + (target - curve[r - 1]) / (curve[r] - curve[r - 1]) * (ns[r] - ns[r - 1]))
    return float("inf")


def write_curves(path: Path, curves: dict[str, np.ndarray], ns: np.ndarray) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["strategy", "seed", "round", "labels", "test_mcc"])
        for s, c in curves.items():
            for seed in range(c.shape[0]):
                for r in range(c.shape[1]):
                    w.writerow([s, seed, r, int(ns[r]), f"{c[seed, r]:.6f}"])


def verdict_report(curves: dict[str, np.ndarray], ns: np.ndarray, args, *, picked_pos, picked_look, overlap,
                   ceiling: float, n_val: int, n_test: int, n_pool: int) -> str:
    """The markdown table and the pre-declared verdict (both criteria)."""
    seeds = curves["random"].shape[0]
    lines = [f"## Active learning on {args.backbone}: mining vs uncertainty vs random (issue 17 item 3)", "",
             f"Test MCC per round, mean ± sd over {seeds} seeds ({n_test} test queries, threshold = max-MCC on {n_val} val; "
             f"pool = {args.pool_mix} mix, {n_pool} images; mining {'without' if args.no_gate else 'with'} the gate refit each round; "
             f"reference head on all {n_pool} pool labels: test MCC {ceiling:.3f}).", "",
             "| strategy | " + " | ".join(f"r{r} (n={n})" for r, n in enumerate(ns)) + " | AUC | picked roadwork | picked look-alike |",
             "|---|" + "---|" * (len(ns) + 3)]
    for s in STRATEGIES:
        c = curves[s]
        cells = " | ".join(f"{m:.3f} ± {sd:.3f}" for m, sd in zip(c.mean(0), c.std(0)))
        lines.append(f"| {s} | {cells} | {c.mean(1).mean():.3f} ± {c.mean(1).std():.3f} | {picked_pos[s].mean():.2f} | {picked_look[s].mean():.2f} |")

    target = float(curves["random"][:, -1].mean())
    budget_cap = args.reach * ns[-1]
    reach_mean = {s: labels_to_reach(ns, curves[s].mean(0), target) for s in ("mining", "uncertainty")}
    reach_seed = [labels_to_reach(ns, curves["mining"][k], curves["random"][k, -1]) for k in range(seeds)]
    auc_m, auc_r = curves["mining"].mean(1), curves["random"].mean(1)
    fmt = lambda v: "not reached" if not np.isfinite(v) else f"{v:.0f}"  # noqa: E731
    lines += ["", "Per seed (final-round test MCC | AUC; labels-to-reach = mining's labels to reach random's final MCC of the same seed):", "",
              "| seed | " + " | ".join(f"{s} final | {s} AUC" for s in STRATEGIES) + " | mining AUC > random | mining labels-to-reach |",
              "|---|" + "---|" * (2 * len(STRATEGIES) + 2)]
    for k in range(seeds):
        cells = " | ".join(f"{curves[s][k, -1]:.3f} | {curves[s][k].mean():.3f}" for s in STRATEGIES)
        lines.append(f"| {k} | {cells} | {'yes' if auc_m[k] > auc_r[k] else 'no'} | {fmt(reach_seed[k])} |")

    auc_wins = int((auc_m > auc_r).sum())
    need = int(np.ceil(args.auc_share * seeds - 1e-9))
    pass_auc = auc_wins >= need
    pass_reach = reach_mean["mining"] <= budget_cap
    final_wins = int((curves["mining"][:, -1] > curves["random"][:, -1]).sum())
    unc_auc = int((curves["uncertainty"].mean(1) > auc_r).sum())
    share = f"{reach_mean['mining'] / ns[-1]:.0%} of random's; " if np.isfinite(reach_mean["mining"]) else ""
    lines += ["", "### Verdict (pre-declared)", "",
              f"1. AUC: mining > random in **{auc_wins}/{seeds}** seeds (need ≥ {need}) -> **{'PASS' if pass_auc else 'FAIL'}**; "
              f"mean AUC mining {auc_m.mean():.3f}, random {auc_r.mean():.3f}, mean paired difference {(auc_m - auc_r).mean():+.3f}.",
              f"2. Labels-to-reach: random's final-round mean test MCC is {target:.3f} at {ns[-1]} labels; mining's mean curve reaches it at "
              f"**{fmt(reach_mean['mining'])}** labels ({share}"
              f"need ≤ {budget_cap:.0f} = {args.reach:.0%}) -> **{'PASS' if pass_reach else 'FAIL'}** (linear interpolation between rounds on the seed-mean curve).",
              "",
              f"**Overall: {'PASS' if pass_auc and pass_reach else 'FAIL'}.**",
              "",
              "Alongside (not part of the verdict): "
              f"mining > random on the final round in {final_wins}/{seeds} seeds; uncertainty > random on AUC in {unc_auc}/{seeds} seeds; "
              f"uncertainty's mean curve reaches random's final MCC at {fmt(reach_mean['uncertainty'])} labels; "
              f"per-seed mining labels-to-reach ≤ {budget_cap:.0f} in {sum(v <= budget_cap for v in reach_seed)}/{seeds} seeds; "
              f"round-0 picks shared by mining and uncertainty (same head): {overlap} of {args.budget}.", ""]
    return "\n".join(lines)


def plot_curves(csv_path: Path, png_path: Path, *, reach: float = 0.7, backbone: str = "") -> Path:
    """Learning curves from the CSV alone: mean ± sd over seeds of test MCC against labels, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colors = {"random": "tab:gray", "uncertainty": "tab:blue", "mining": "tab:orange"}
    last_n, target = 0, None
    for s in STRATEGIES:
        mine = [r for r in rows if r["strategy"] == s]
        ns = np.array(sorted({int(r["labels"]) for r in mine}))
        seeds = sorted({int(r["seed"]) for r in mine})
        grid = np.full((len(seeds), len(ns)), np.nan)
        for r in mine:
            grid[seeds.index(int(r["seed"])), int(np.searchsorted(ns, int(r["labels"])))] = float(r["test_mcc"])
        m, sd = grid.mean(0), grid.std(0)
        ax.plot(ns, m, marker="o", color=colors[s], label=f"{s} (mean ± sd, {len(seeds)} seeds)")
        ax.fill_between(ns, m - sd, m + sd, color=colors[s], alpha=0.18)
        if s == "random":
            last_n, target = int(ns[-1]), float(m[-1])
    if target is not None:
        ax.axhline(target, color="tab:gray", ls=":", lw=1, label=f"random's final mean MCC {target:.3f}")
        ax.axvline(reach * last_n, color="black", ls="--", lw=1, label=f"{reach:.0%} of random's labels ({reach * last_n:.0f})")
    ax.set_xlabel("labelled pool samples")
    ax.set_ylabel("test MCC (threshold: max-MCC on val)")
    ax.set_title("Active learning on the demo corpus: mining vs uncertainty vs random"
                 + (f"\n(frozen {backbone} backbone, head retrained each round)" if backbone else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


if __name__ == "__main__":
    main()
