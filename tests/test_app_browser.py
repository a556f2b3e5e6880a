"""The FiftyOne App in headless Chromium: the dataset renders, the plugin's operators run, and a false
positive leads to its "more like this" batch and the embeddings map (issue 20)."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from browser import chromium, page_text, require_browser, running_app, wait_until
from PIL import Image

from curation.app.operators import operator_names

pytestmark = pytest.mark.browser

OPERATOR_LABEL = "Roadwork: dataset status"


@pytest.fixture(autouse=True)
def _needs_browser():
    """Skip before the dataset is built when Chromium or chromedriver is missing."""
    require_browser()


def _make_dataset(dataset, tmp_path):
    import fiftyone as fo

    labels = ["roadwork", "no_roadwork", "roadwork", "no_roadwork"]
    samples = []
    for i, label in enumerate(labels):
        path = tmp_path / f"street_{i}.jpg"
        color = (230, 120, 30) if label == "roadwork" else (90, 110, 140)
        Image.new("RGB", (320, 240), color).save(path, quality=90)
        samples.append(fo.Sample(filepath=str(path), ground_truth=fo.Classification(label=label), split="train"))
    dataset.add_samples(samples)
    del samples
    # Real Stage-1 fields (tiny random-weight model): stage1 chips and stage1_views boxes.
    from curation.predict.job import predict_collection
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model

    model = Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0))
    predict_collection(dataset, model, progress=False)
    return labels


def _click_button(driver, text: str) -> None:
    """Click the visible button labelled ``text``; retried while the App re-renders it (stale element)."""
    from selenium.webdriver.common.by import By

    def click() -> bool:
        buttons = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == text and b.is_displayed()]
        if buttons:
            buttons[0].click()
        return bool(buttons)

    wait_until(click, timeout=15, what=f"a {text!r} button")


def test_app_renders_dataset_and_runs_plugin_operator(settings, dataset, tmp_path, artifacts_dir):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    assert "dataset_status" in operator_names()
    labels = _make_dataset(dataset, tmp_path)
    started = time.monotonic()
    with running_app(settings, tmp_path) as server, chromium(tmp_path) as driver:
        driver.get(server.dataset_url(dataset.name))

        # The grid: one label chip per sample, with the ground-truth label text.
        def grid_chips():
            chips = driver.find_elements(By.CSS_SELECTOR, '[data-cy="tag-ground_truth"]')
            return len(chips) == len(labels) and chips

        chips = wait_until(
            grid_chips,
            timeout=60,
            what="the sample grid's ground_truth chips",
        )
        assert sorted(c.text for c in chips) == sorted(labels)
        stage1_chips = wait_until(
            lambda: driver.find_elements(By.CSS_SELECTOR, '[data-cy="tag-stage1"]'), timeout=30, what="stage1 chips"
        )
        assert {c.text for c in stage1_chips} <= {"roadwork", "no_roadwork"}
        sidebar = page_text(driver)
        assert "stage1_views" in sidebar and "gate_features" in sidebar
        selector = driver.find_element(By.CSS_SELECTOR, '[data-cy="selector-dataset"]')
        assert selector.get_attribute("value") == dataset.name
        assert dataset.name in driver.page_source
        _dismiss_promotions(driver)  # the Enterprise promotion covers the grid
        time.sleep(0.5)
        driver.save_screenshot(str(artifacts_dir / "app.png"))

        # The operator browser (backtick) lists the plugin's operator.
        ActionChains(driver).send_keys("`").perform()
        ActionChains(driver).send_keys("roadwork").perform()
        wait_until(
            lambda: OPERATOR_LABEL in page_text(driver), timeout=15, what=f"{OPERATOR_LABEL!r} in the operator browser"
        )
        listed = page_text(driver)
        for label in ("Roadwork: predict (Stage-1)", "Roadwork: evaluate", "Roadwork: mine hard cases", "Roadwork: retrain and export",
                      "Roadwork: embeddings map", "Roadwork: similar to selected"):
            assert label in listed, label
        driver.save_screenshot(str(artifacts_dir / "app-operator-browser.png"))

        # Running it from the App goes App -> server -> plugin -> curation and shows the counts.
        item = wait_until(
            lambda: [e for e in driver.find_elements(By.XPATH, f"//*[text()='{OPERATOR_LABEL}']") if e.is_displayed()],
            timeout=15, what=f"{OPERATOR_LABEL!r} in the list",
        )
        item[0].click()
        _click_button(driver, "Execute")
        text = wait_until(lambda: "Label:" in (t := page_text(driver)) and t, timeout=30, what="the operator's output")
        assert f"{dataset.name}: 4 samples" in text
        assert "Label: no_roadwork 2, roadwork 2" in text
        driver.save_screenshot(str(artifacts_dir / "app-operator-output.png"))
    assert time.monotonic() - started < 90


def _dismiss_promotions(driver) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.TAG_NAME, "button"):  # Enterprise promotions cover parts of the page
        try:
            if button.text.strip() == "Dismiss" and button.is_displayed():
                driver.execute_script("arguments[0].click()", button)
        except StaleElementReferenceException:  # the App re-rendered it meanwhile
            continue


def test_similar_to_selected_from_a_false_positive_and_the_embeddings_map(settings, dataset, tmp_path, artifacts_dir):
    """Issue 20, as a user: open the false positives, select one, run "similar to selected",
    find the tagged batch in the grid; then the map workspace shows the Embeddings panel's map."""
    import fiftyone as fo
    import fiftyone.core.utils as fou
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from curation import schema
    from curation.evaluate.job import evaluate_predictions
    from curation.mine.similar import SimilarConfig, find_similar
    from curation.predict.job import predict_collection
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model
    from curation.store.brain import index_embeddings

    rng = np.random.default_rng(0)
    samples = []
    for i in range(64):  # 4 val negatives (false positives below), 60 pool images: more than the 50 asked for
        path = tmp_path / f"street_{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path, quality=90)
        split = "val" if i < 4 else "pool"
        samples.append(fo.Sample(filepath=str(path), split=split, ground_truth=fo.Classification(label="no_roadwork") if split == "val" else None))
    dataset.add_samples(samples)
    model = Stage1Model.build(Stage1Config(threshold=0.001), backbone=tiny_random_backbone(seed=0))  # calls everything roadwork
    predict_collection(dataset, model, progress=False)
    evaluate_predictions(dataset.match(fo.ViewField("split") == "val"))
    index_embeddings(dataset, method="pca", progress=False)
    false_positives = dataset.load_saved_view(schema.FAILURE_VIEWS["FP"])
    assert false_positives.count() == 4
    query = false_positives.first().id
    expected, _ = find_similar(dataset, [query], SimilarConfig())  # the operator's defaults: k=50 of the 60

    with running_app(settings, tmp_path) as server, chromium(tmp_path) as driver:
        driver.get(server.dataset_url(dataset.name) + "?view=" + fou.to_slug(schema.FAILURE_VIEWS["FP"]))
        lookers = wait_until(
            lambda: (found := driver.find_elements(By.CSS_SELECTOR, '[data-cy="looker"]')) and len(found) == 4 and found,
            timeout=60, what="the four false positives in the grid",
        )
        _dismiss_promotions(driver)
        ActionChains(driver).move_to_element(lookers[0]).perform()  # the checkbox shows on hover
        lookers[0].find_element(By.CSS_SELECTOR, '[data-cy="looker-checkbox-"]').click()
        ActionChains(driver).send_keys("`").perform()
        ActionChains(driver).send_keys("similar to selected").perform()
        wait_until(lambda: "Roadwork: similar to selected" in page_text(driver), timeout=15, what="the operator in the browser")
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        _click_button(driver, "Execute")
        text = wait_until(lambda: "most like the 1 selected" in (t := page_text(driver)) and t, timeout=60, what="the operator's summary")
        (tag,) = [t for t in dataset.distinct("tags") if t.startswith(schema.SIMILAR_TAG_PREFIX)]
        assert tag in text and f"{len(expected)} samples" in text
        assert sorted(dataset.match_tags(tag).values("id")) == sorted(expected)  # the selected sample was the query
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, '[data-cy="looker"]')) >= 8, timeout=30, what="the batch in the grid")
        driver.save_screenshot(str(artifacts_dir / "app-similar-to-selected.png"))

        # The map: the workspace puts the grid beside the Embeddings panel; open the version's map.
        driver.get(server.dataset_url(dataset.name) + "?workspace=" + fou.to_slug(schema.MAP_WORKSPACE))
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '[data-cy="panel-content-Embeddings"]'), timeout=60, what="the Embeddings panel")
        _dismiss_promotions(driver)
        run = wait_until(
            lambda: [e for e in driver.find_elements(By.XPATH, "//*[text()='stage1_map_0_0_0']") if e.is_displayed()],
            timeout=30, what="the map run in the Embeddings panel",
        )
        driver.execute_script("arguments[0].click()", run[0])
        wait_until(lambda: "64 points" in page_text(driver), timeout=60, what="the 64 points of the map")
        _dismiss_promotions(driver)

        # Coloured by outcome: "Color by" -> eval_stage1 (the evaluate job's TP/FP/FN/TN); the legend counts the FPs.
        panel = driver.find_element(By.CSS_SELECTOR, '[data-cy="panel-content-Embeddings"]')
        color_by = [e for e in panel.find_elements(By.XPATH, ".//*[text()='None']") if e.is_displayed()]
        driver.execute_script("arguments[0].click()", color_by[0])
        option = wait_until(
            lambda: [e for e in driver.find_elements(By.XPATH, "//*[text()='eval_stage1']") if e.is_displayed()], timeout=15, what="eval_stage1 in Color by"
        )[-1]
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", option)
        option.find_element(By.XPATH, "..").click()
        # "FP 0 / 4": none of the four false positives (val) is in the current view (the pool batch)
        legend = wait_until(lambda: re.search(r"FP\n(\d+ / )?4\b", t := panel.text) and t, timeout=30, what="the FP count in the map's legend")
        assert "EVAL_STAGE1" in legend.upper()
        driver.save_screenshot(str(artifacts_dir / "app-embeddings-map.png"))
