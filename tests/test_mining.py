from __future__ import annotations

from datetime import date
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest

from curation import schema, store
from curation.errors import CurationError
from curation.evaluate.gate_job import GateJobConfig, fit_and_apply_gate
from curation.mine.job import MiningConfig, mine
from curation.stage1.features import gate_feature_dict, gate_features
from curation.stage1.hardness import HardnessWeights, hardness_scores

DAY = date(2026, 11, 25)


def _sample(i, *, split, p, views, truth, risk=None, emb=None, tags=(), group=None):
    feats = gate_feature_dict(gate_features(views[None, :], np.array([p]), threshold=0.5, top_k=2, flip=False)[0], False)
    label = "roadwork" if p >= 0.5 else "no_roadwork"
    return fo.Sample(
        filepath=f"/tmp/mine{i}.jpg",
        split=split,
        sequence_group=group or f"v{i}/s0",
        ground_truth=fo.Classification(label=truth) if truth else None,
        stage1=fo.Classification(label=label, confidence=max(p, 1 - p), p_roadwork=p, logits=[np.log(1 - p), np.log(p)]),
        gate_features=feats,
        failure_risk=risk,
        stage1_embedding=list(emb) if emb is not None else None,
        tags=list(tags),
    )


def test_hardness_orders_uncertain_risky_mistakes_first():
    p = np.array([0.5, 0.99, 0.9, 0.02])
    risk = np.array([0.9, 0.01, 0.5, 0.05])
    var = np.array([0.2, 0.0, 0.1, 0.0])
    truth = np.array([1.0, 1.0, 0.0, np.nan])  # sample 2 is a confident mistake
    h = hardness_scores(p, risk, var, truth, weights=HardnessWeights())
    assert h.argmax() == 0
    assert h[2] > h[1] and h[2] > h[3]
    assert ((0 <= h) & (h <= 1)).all()


def test_hardness_centres_uncertainty_on_the_decision_threshold():
    # Threshold 0.2: p = 0.2 sits on the boundary (entropy ln 2); p = 0.5 is logit(0.5) − logit(0.2) = ln 4
    # past it, i.e. q = 0.8, entropy −0.8 ln 0.8 − 0.2 ln 0.2 = 0.5004 nats < ln 2.
    p = np.array([0.2, 0.5, 0.05])
    nan = np.full(3, np.nan)
    entropy_only = HardnessWeights(entropy=1.0, failure_risk=0.0, view_disagreement=0.0, mistakenness=0.0)
    at_02 = hardness_scores(p, nan, nan, nan, weights=entropy_only, threshold=0.2)
    assert at_02.argmax() == 0 and at_02[1] > at_02[2]
    assert hardness_scores(p, nan, nan, nan, weights=entropy_only).argmax() == 1  # default 0.5
    # A NaN threshold (older predictions) means 0.5; per-sample thresholds are allowed.
    mixed = hardness_scores(p, nan, nan, nan, weights=entropy_only, threshold=np.array([np.nan, np.nan, np.nan]))
    np.testing.assert_allclose(mixed, hardness_scores(p, nan, nan, nan, weights=entropy_only))
    # Mistakenness judges correctness at the threshold. p = 0.3 with truth 0 is wrong at 0.2 and right at
    # 0.5; p = 0.45 with truth 1 is right at 0.2 and wrong at 0.5, so the ranks swap.
    mist_only = HardnessWeights(entropy=0.0, failure_risk=0.0, view_disagreement=0.0, mistakenness=1.0)
    p2, truth = np.array([0.3, 0.45]), np.array([0.0, 1.0])
    np.testing.assert_array_equal(hardness_scores(p2, nan[:2], nan[:2], truth, weights=mist_only, threshold=0.2), [1.0, 0.0])
    np.testing.assert_array_equal(hardness_scores(p2, nan[:2], nan[:2], truth, weights=mist_only, threshold=0.5), [0.0, 1.0])


@pytest.fixture
def mined_dataset(dataset):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(40):
        split = ["train", "pool", "val", "calib", "test"][i % 5]
        p = float(rng.uniform(0.01, 0.99))
        samples.append(_sample(i, split=split, p=p, views=rng.uniform(size=10), truth="roadwork" if i % 3 else "no_roadwork",
                               risk=float(rng.uniform()), emb=rng.normal(size=8)))
    # the hardest sample is a leak: never mined
    samples.append(_sample(99, split="train", p=0.5, views=np.full(10, 0.5), truth="no_roadwork", risk=1.0,
                           emb=rng.normal(size=8), tags=["leak"]))
    dataset.add_samples(samples)
    return dataset


def test_mine_picks_only_train_and_pool_and_is_idempotent(mined_dataset):
    cfg = MiningConfig(quota=5, min_hardness=0.0)
    report = mine(mined_dataset, day=DAY, config=cfg)
    assert len(report.selected_ids) == 5 and report.n_candidates == 16
    picked = mined_dataset.select(list(report.selected_ids))
    assert set(picked.values("split")) <= {"train", "pool"}
    assert "leak" not in picked.count_sample_tags()
    assert set(mined_dataset.load_saved_view(schema.LATEST_HARD_VIEW).values("id")) == set(report.selected_ids)

    again = mine(mined_dataset, day=DAY, config=cfg)
    assert again.already_done and set(again.selected_ids) == set(report.selected_ids)
    assert mined_dataset.match_tags("hard:2026-11-25").count() == 5
    # the next day never re-picks what was mined before
    nxt = mine(mined_dataset, day=date(2026, 11, 26), config=cfg)
    assert not set(nxt.selected_ids) & set(report.selected_ids)
    assert store.list_runs(mined_dataset, "mine")[0]["tag"] == "hard:2026-11-26"


def test_threshold_counts_what_passed(mined_dataset):
    report = mine(mined_dataset, day=DAY, config=MiningConfig(quota=100, min_hardness=0.7))
    h = np.array([v for v in mined_dataset.match({"split": {"$in": ["train", "pool"]}}).match_tags("leak", bool=False).values("hardness")])
    assert report.n_passed == int((h >= 0.7).sum()) == len(report.selected_ids)


def test_concurrent_run_is_refused_by_the_lock(mined_dataset):
    lock = f"mine:{mined_dataset.name}:{DAY.isoformat()}"
    assert store.acquire_lock(lock, "someone-else", ttl_s=60)
    try:
        with pytest.raises(CurationError, match="holds the lock"):
            mine(mined_dataset, day=DAY, config=MiningConfig(quota=3, min_hardness=0.0))
        assert mined_dataset.match_tags("hard:2026-11-25").count() == 0
    finally:
        store.release_lock(lock, "someone-else")


def test_killed_run_leaves_no_partial_batch(mined_dataset, monkeypatch):
    import fiftyone.core.collections as foc

    def killed(self, tags):
        raise KeyboardInterrupt

    monkeypatch.setattr(foc.SampleCollection, "tag_samples", killed)
    with pytest.raises(KeyboardInterrupt):
        mine(mined_dataset, day=DAY, config=MiningConfig(quota=3, min_hardness=0.0))
    monkeypatch.undo()
    assert mined_dataset.match_tags("hard:2026-11-25").count() == 0
    assert len(mine(mined_dataset, day=DAY, config=MiningConfig(quota=3, min_hardness=0.0)).selected_ids) == 3


def test_a_run_that_finishes_while_another_waits_for_the_lock_is_not_doubled(mined_dataset, monkeypatch):
    """Run B checks (nothing tagged), run A mines and releases the lock, then B gets the lock: B must
    return A's batch, not tag a second one (A's samples are no longer candidates)."""
    cfg = MiningConfig(quota=3, min_hardness=0.0)
    real_acquire = store.locks.acquire_lock  # what store.exclusive calls
    first: dict = {}

    def others_run_first(name, owner, ttl_s):
        if not first:
            monkeypatch.setattr(store.locks, "acquire_lock", real_acquire)
            first["report"] = mine(mined_dataset, day=DAY, config=cfg)  # the cron run, start to finish
        return real_acquire(name, owner, ttl_s)

    monkeypatch.setattr(store.locks, "acquire_lock", others_run_first)
    late = mine(mined_dataset, day=DAY, config=cfg)
    assert late.already_done and set(late.selected_ids) == set(first["report"].selected_ids)
    assert mined_dataset.match_tags("hard:2026-11-25").count() == 3


def test_mining_a_view_tags_its_own_batch_and_leaves_the_daily_run_alone(mined_dataset):
    cfg = MiningConfig(quota=2, min_hardness=0.0)
    pool_only = mined_dataset.match({"split": "pool"})
    adhoc = mine(pool_only, day=DAY, config=cfg)
    assert adhoc.tag.startswith("hard:2026-11-25:view-") and len(adhoc.selected_ids) == 2
    assert set(mined_dataset.select(list(adhoc.selected_ids)).values("split")) == {"pool"}
    assert schema.LATEST_HARD_VIEW not in mined_dataset.list_saved_views()  # hard/latest is the daily batch's
    again = mine(mined_dataset.match({"split": "pool"}), day=DAY, config=cfg)  # the same view, rebuilt
    assert again.already_done and again.tag == adhoc.tag and set(again.selected_ids) == set(adhoc.selected_ids)

    daily = mine(mined_dataset, day=DAY, config=cfg)  # the cron run is not "already done"
    assert not daily.already_done and daily.tag == "hard:2026-11-25" and len(daily.selected_ids) == 2
    assert not set(daily.selected_ids) & set(adhoc.selected_ids)  # either tag keeps a sample out of later batches
    assert set(mined_dataset.load_saved_view(schema.LATEST_HARD_VIEW).values("id")) == set(daily.selected_ids)


def test_backfill_keeps_hard_latest_and_a_rerun_repairs_it(mined_dataset, monkeypatch):
    cfg = MiningConfig(quota=2, min_hardness=0.0)
    today = mine(mined_dataset, day=date(2026, 11, 26), config=cfg)
    mine(mined_dataset, day=DAY, config=cfg)  # backfilling the day before
    assert set(mined_dataset.load_saved_view(schema.LATEST_HARD_VIEW).values("id")) == set(today.selected_ids)
    # A run killed between tagging and saving the view: the re-run (already done) points hard/latest right.
    mined_dataset.delete_saved_view(schema.LATEST_HARD_VIEW)
    rerun = mine(mined_dataset, day=date(2026, 11, 26), config=cfg)
    assert rerun.already_done
    assert set(mined_dataset.load_saved_view(schema.LATEST_HARD_VIEW).values("id")) == set(today.selected_ids)


@pytest.mark.parametrize(("changes", "match"), [({"diversity": 1.5}, "diversity"), ({"lock_ttl_s": -1}, "lock_ttl_s")])
def test_bad_mining_settings_are_refused_before_any_work(changes, match):
    from curation.errors import InputError

    with pytest.raises(InputError, match=match):
        MiningConfig(**changes)


def test_batch_says_why_it_is_not_diverse(mined_dataset):
    mined_dataset.match({"split": "pool"}).limit(1).set_values("stage1_embedding", [None])
    report = mine(mined_dataset, day=DAY, config=MiningConfig(quota=3, min_hardness=0.0))
    assert len(report.selected_ids) == 3
    assert report.note == "diversity off: 1 of 16 shortlisted samples have no stage1_embedding (predict them)"


def test_diversity_skips_near_identical_frames(dataset):
    same = np.ones(4)
    dataset.add_samples([
        _sample(0, split="train", p=0.5, views=np.full(10, 0.5), truth=None, risk=0.99, emb=same),
        _sample(1, split="train", p=0.5, views=np.full(10, 0.5), truth=None, risk=0.98, emb=same),
        _sample(2, split="train", p=0.45, views=np.full(10, 0.45), truth=None, risk=0.9, emb=np.array([1, -1, 1, -1.0])),
    ])
    report = mine(dataset, day=DAY, config=MiningConfig(quota=2, min_hardness=0.0))
    paths = sorted(dataset.select(list(report.selected_ids)).values("filepath"))
    assert paths in (["/tmp/mine0.jpg", "/tmp/mine2.jpg"], ["/tmp/mine1.jpg", "/tmp/mine2.jpg"])


def test_mine_reads_each_prediction_threshold(dataset):
    """Stored at threshold 0.2, p = 0.22 is on the decision boundary and p = 0.5 is not: mining picks the former."""
    near_boundary = _sample(0, split="pool", p=0.22, views=np.full(10, 0.22), truth=None, emb=np.array([1.0, 0.0]))
    at_half = _sample(1, split="pool", p=0.5, views=np.full(10, 0.5), truth=None, emb=np.array([0.0, 1.0]))
    for s in (near_boundary, at_half):
        s["stage1"]["threshold"] = 0.2
    dataset.add_samples([near_boundary, at_half])
    entropy_only = HardnessWeights(entropy=1.0, failure_risk=0.0, view_disagreement=0.0, mistakenness=0.0)
    report = mine(dataset, day=DAY, config=MiningConfig(quota=1, min_hardness=0.0, weights=entropy_only))
    assert dataset.select(list(report.selected_ids)).values("filepath") == ["/tmp/mine0.jpg"]


def _gate_corpus(n: int = 400, *, seed: int = 3, version: str | None = None, flip: bool = False) -> list[fo.Sample]:
    """Val (first half), calib, train samples where a small margin makes a Stage-1 mistake likelier."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        split = "val" if i < n // 2 else "calib" if i < int(n * 0.85) else "train"
        truth = int(rng.uniform() < 0.5)
        margin = rng.uniform(0.0, 0.5)  # small margin → uncertain → more often wrong
        wrong = rng.uniform() < (0.5 - margin)
        pred = truth ^ int(wrong)
        p = 0.5 + margin if pred else 0.5 - margin
        p = float(np.clip(p, 0.01, 0.99))
        views = np.clip(p + rng.normal(0, 0.05, 10), 0.001, 0.999)
        sample = _sample(i, split=split, p=p, views=views, truth="roadwork" if truth else "no_roadwork", group=f"v{i // 4}/s0")
        if version:
            sample["model_version"] = version
        if flip:  # a model with flipped views has one more gate feature
            sample["gate_features"] = {**sample["gate_features"], "flip_consistency": float(rng.uniform())}
        samples.append(sample)
    return samples


def test_gate_fit_on_val_certifies_on_calib(dataset, tmp_path: Path):
    dataset.add_samples(_gate_corpus())
    report = fit_and_apply_gate(dataset, runs_root=tmp_path, config=GateJobConfig(alpha=0.2, delta=0.1))
    assert report.n_val == 200 and report.n_calib == 140
    assert report.metrics["auroc"] > 0.65  # uncertainty predicts mistakes
    assert dataset.exists("failure_risk").count() == 400
    assert dataset.match({"split": "train"}).exists("stage1_correct").count() == 0  # never in-sample
    assert dataset.match({"split": "val"}).exists("stage1_correct").count() == 200
    assert Path(report.plot_path).stat().st_size > 1000 and Path(report.gate_path).is_file()
    assert Path(report.gate_path).parent == tmp_path / "gates" / "unversioned"  # chosen by the job (no model version here)
    if report.ltt["threshold"] is not None:
        accepted = np.array(dataset.match({"split": "calib"}).values("failure_risk")) <= report.ltt["threshold"]
        assert accepted.sum() == report.ltt["n_accepted"]


def test_gate_is_fit_for_one_model_and_leaves_other_models_predictions_without_risk(dataset, tmp_path: Path):
    """After a model change that adds flipped views, test samples still hold the old model's features
    (the daily job does not re-predict test): the gate fits on the new model's samples, writes risk for
    them only, clears the stale risk of the others, and a val split mixing models is refused by name."""
    from curation.errors import InputError

    new = _gate_corpus(version="0.2.0", flip=True)
    old = _gate_corpus(40, seed=9, version="0.1.0")
    for s in old:
        s["split"], s["failure_risk"] = "test", 0.5  # risk from the old model's gate
    dataset.add_samples(new + old)
    report = fit_and_apply_gate(dataset, runs_root=tmp_path, model_version="0.2.0")
    assert report.n_val == 200 and report.n_calib == 140
    assert dataset.match({"model_version": "0.2.0"}).exists("failure_risk").count() == 400
    assert dataset.match({"model_version": "0.1.0"}).exists("failure_risk").count() == 0
    assert dataset.match({"split": "test"}).exists("stage1_correct").count() == 40  # correctness needs no features
    # Without a version the gate takes val's model; a val split holding two models is refused.
    assert fit_and_apply_gate(dataset, runs_root=tmp_path).n_val == 200
    dataset.match({"split": "val"}).limit(5).set_values("model_version", ["0.1.0"] * 5)
    with pytest.raises(InputError, match=r"Val holds predictions of several models.*0\.1\.0.*0\.2\.0"):
        fit_and_apply_gate(dataset, runs_root=tmp_path)


def test_gate_and_mining_report_the_same_from_the_app_and_the_cli(cli_env, monkeypatch):
    """One run, one report: the App's summary is the report's own text, and the CLI prints it too."""
    from typer.testing import CliRunner

    from curation.app import operators as cops
    from curation.cli import app

    dataset = store.open_dataset(cli_env)
    dataset.add_samples(_gate_corpus())
    cops.configure_plugins(cli_env)
    gate = cops.execute("compute_gate", dataset, {"alpha": 0.2, "delta": 0.1, "delegate": False})
    assert gate["summary"].startswith("Gate on 200 val samples (out-of-fold): AUROC") and "(α=0.2, δ=0.1)" in gate["summary"]
    assert Path(gate["gate_path"]).parent == cli_env.runs_root / "gates" / "unversioned"

    mined = cops.execute("mine_hard_cases", dataset, {"quota": 5, "min_hardness": 0.0, "delegate": False})
    assert len(mined["selected_ids"]) == 5 and f"tagged 5 as {mined['tag']}. Saved view: {schema.LATEST_HARD_VIEW}." in mined["summary"]
    again = CliRunner().invoke(app, ["mine", "--quota", "5", "--min-hardness", "0", "--day", mined["day"]], env={"COLUMNS": "300"})
    assert again.exit_code == 0, again.output
    assert f"{mined['tag']} already mined: 5 samples (nothing changed)." in again.output
