"""The daily job end to end (issue 20's cron user): predict, gate, mine, then the embeddings map,
similarity index and uniqueness for the model it predicted with; a re-run the same day changes nothing."""

from __future__ import annotations

from datetime import date

from test_retrain import CONFIG, corpus  # noqa: F401  (the small demo corpus and a fast retrain config)

from curation import store
from curation.mine.job import MiningConfig
from curation.pipelines import DailyMiningConfig, run_daily_mining
from curation.retrain.job import run_retrain
from curation.store.brain import brain_keys

DAY = date(2026, 12, 4)


def test_daily_job_predicts_gates_mines_and_refreshes_the_map(settings, loaded):
    champion = run_retrain(settings, CONFIG).version
    config = DailyMiningConfig(map_method="pca", mining=MiningConfig(quota=5, min_hardness=0.0))
    first = run_daily_mining(settings, config, day=DAY)
    assert first["predicted"] > 0 and len(first["mining"]["selected_ids"]) == 5
    map_key, sim_key = brain_keys(champion)
    assert first["brain"]["map_key"] == map_key and not first["brain"]["reused"]
    assert {map_key, sim_key, "uniqueness"} <= set(loaded.list_brain_runs())
    kinds = {r["kind"] for r in store.list_runs(loaded)}
    assert {"retrain", "predict", "gate", "mine"} <= kinds

    again = run_daily_mining(settings, config, day=DAY)
    assert again["predicted"] == 0 and again["brain"]["reused"]
    assert again["mining"]["already_done"] and sorted(again["mining"]["selected_ids"]) == sorted(first["mining"]["selected_ids"])


def test_a_map_failure_never_costs_the_days_batch(settings, loaded, monkeypatch):
    import fiftyone.brain as fob

    run_retrain(settings, CONFIG)

    def down(*args, **kwargs):
        raise ValueError("vector database unreachable")

    monkeypatch.setattr(fob, "compute_visualization", down)
    result = run_daily_mining(settings, DailyMiningConfig(map_method="pca", mining=MiningConfig(quota=3, min_hardness=0.0)), day=DAY)
    assert "vector database unreachable" in result["brain"]["error"]
    assert len(result["mining"]["selected_ids"]) == 3


def test_daily_job_on_ray_predicts_what_the_process_engine_would(settings, loaded):
    """`engine: ray` in the YAML: the same samples predicted with the same model version, then the day's batch."""
    import ray
    from fiftyone import ViewField as F

    from curation.settings import RaySettings

    champion = run_retrain(settings, CONFIG).version
    config = DailyMiningConfig(engine="ray", map_method=None, mining=MiningConfig(quota=3, min_hardness=0.0))
    target = loaded.match(F("split").is_in(list(config.predict_splits)))
    try:
        result = run_daily_mining(settings.replace(ray=RaySettings(num_actors=1, batch_size=16)), config, day=DAY)
    finally:
        ray.shutdown()
    assert result["predicted"] == target.count()
    assert set(target.distinct("model_version")) == {champion} and result["brain"] is None
    assert len(result["mining"]["selected_ids"]) == 3
