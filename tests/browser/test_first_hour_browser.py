"""A newcomer's first hour in a real browser: the demo dataset built alone from Home, Explore's neighbour scores
on centred vectors, Compare's paired test and winner, and the Jobs page's warning for a run capped while
improving; then every page photographed (``tmp/artifacts/browser/first-hour-*.png``)."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

from browser_helpers import add_topic_features, open_page, running_app, shot, wait_for_app  # noqa: E402

PAGES = ["", "data", "extract", "train", "jobs", "compare", "explore", "study"]
BUILD_TIMEOUT_S = 240
TRAIN_TIMEOUT_S = 150


def _no_exception(page) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def test_home_builds_the_demo_dataset_alone(browser, tmp_path, artifacts):
    """A fresh database: *Build the demo dataset* queues one job; the worker builds it; Home then says so."""
    from storage import Database
    from storage.queue import list_jobs
    from storage.views import dataset_names

    db = Database(tmp_path / "fresh.duckdb")
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    try:
        with running_app(db.path) as base:
            open_page(page, base, "")
            main = page.locator('[data-testid="stMain"]')
            expect(main.get_by_text(re.compile(r"^Estimated time: "))).to_have_count(1)
            shot(page, artifacts, "first-hour-home-empty")
            main.get_by_role("button", name="Build the demo dataset").click()
            main.get_by_text(re.compile(r"^Queued job #\d+: the demo dataset")).wait_for()
            assert [(j.kind, j.group_name) for j in list_jobs(db)] == [("demo", None)]
            deadline = time.monotonic() + BUILD_TIMEOUT_S
            while dataset_names(db) != ["demo"] and time.monotonic() < deadline:
                time.sleep(2)
            assert dataset_names(db) == ["demo"]
            open_page(page, base, "")
            expect(main.get_by_text("The demo dataset is stored.")).to_have_count(1)
            expect(main.get_by_role("button", name="Build the demo dataset")).to_have_count(0)
            expect(main.get_by_role("button", name="Run the demo study")).to_have_count(1)  # still offered
            assert [j.kind for j in list_jobs(db)] == ["demo"]                             # nothing else ran
            _no_exception(page)
            shot(page, artifacts, "first-hour-home-built")
    finally:
        context.close()


def _offset_features(db, name: str = "demo-offset"):
    """The topic features on top of one shared direction 50x their size: what mean-pooled LLM layers look like."""
    import tempfile
    from pathlib import Path

    from jobs.workflows import import_features_npz
    from storage.datasets import get_dataset
    from storage.features import get_feature_set, list_feature_sets, read_features

    ds = get_dataset(db, "demo")
    if any(fs.name == name for fs in list_feature_sets(db, ds.id)):
        return get_feature_set(db, name, dataset=ds.id)
    topics = add_topic_features(db)
    feats, _ = read_features(db, topics)
    rng = np.random.default_rng(3)
    shared = rng.normal(size=feats.shape[-1])
    feats = feats.astype(np.float32) + (50 * shared / np.linalg.norm(shared) * np.sqrt(feats.shape[-1]))
    from storage.datasets import load_items
    items = load_items(db, ds.id)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.npz"
        np.savez(path, item_ids=np.asarray(items["item_id"].tolist(), dtype=str), features=feats.astype(np.float32))
        import_features_npz(db, name, ds.id, path, backbone="synthetic-offset")
    return get_feature_set(db, name, dataset=ds.id)


def _scores(main) -> list[float]:
    lines = main.get_by_text(re.compile(r"· cos -?\d\.\d{3,6}")).all_inner_texts()
    return [float(re.search(r"cos (-?\d\.\d+)", t).group(1)) for t in lines]


def test_explore_scores_are_centred_with_raw_as_an_option(app_server, app_db, page, artifacts):
    from jobs import neighbours as nb

    fs = _offset_features(app_db)
    open_page(page, app_server, "explore")
    main = page.locator('[data-testid="stMain"]')
    expect(main.get_by_text(re.compile(r"^Scores: cosine of centred vectors"))).to_have_count(1)
    main.get_by_role("combobox", name="Representation 1").wait_for()
    slots = main.get_by_role("combobox", name=re.compile(r"Representation \d")).count()
    for slot in range(slots):  # every representation: the offset set (layers as the page defaults them)
        main.get_by_role("combobox", name=f"Representation {slot + 1}").click()
        page.get_by_role("option").filter(has_text=fs.name).first.click()
        wait_for_app(page)
    centred = _scores(main)
    assert slots >= 2 and len(centred) == 10 * slots
    assert max(centred) < 0.99 and min(centred) < 0.9                             # spread out, not all ~1
    catalog = nb.load_catalog(app_db, "demo")
    item = catalog.items.at[int(catalog.search("", limit=1)["idx"].iloc[0]), "item_id"]  # the page's default video
    want = nb.neighbours_of(app_db, nb.feature_source(app_db, fs.name, str(fs.num_layers // 2)), item, 10)
    assert centred[:10] == pytest.approx([r["score"] for r in want], abs=1e-3)
    shot(page, artifacts, "first-hour-explore-centred")
    main.get_by_role("combobox", name="Similarity").click()
    page.get_by_role("option").filter(has_text="raw cosine").click()
    wait_for_app(page)
    expect(main.get_by_text(re.compile(r"^Scores: raw cosine"))).to_have_count(1)
    raw = _scores(main)
    assert len(raw) == 10 * slots and min(raw) > 0.99
    # printed with the decimals that tell them apart: within a column no two different scores read alike
    texts = [re.search(r"cos (-?\d\.\d+)", t).group(1) for t in
             main.get_by_text(re.compile(r"· cos -?\d\.\d{3,6}")).all_inner_texts()[:10]]
    assert len(texts[0]) > 5 and len(set(texts)) == len(set(raw[:10]))
    _no_exception(page)
    shot(page, artifacts, "first-hour-explore-raw")


def _planted_runs(db) -> None:
    """ID and gate on the topic features, 3 paired seeds each, gate better on every seed."""
    from storage.datasets import get_dataset
    from storage.runs import create_run, finish_run, list_runs

    if list_runs(db, study="first-hour"):
        return
    ds, fs = get_dataset(db, "demo"), add_topic_features(db)
    for seed, (base, gate) in zip((101, 102, 103), ((0.101, 0.901), (0.104, 0.907), (0.099, 0.898))):
        for strategy, value in (("id", base), ("gate", gate)):
            run = create_run(db, ds.id, strategy, {"epochs": 50, "feature_set": fs.name},
                             feature_set_id=fs.id if strategy == "gate" else None,
                             layers=[2] if strategy == "gate" else None, seed=seed, study="first-hour")
            metrics = {"NDCG@10": value, "HR@10": value, "NDCG@20": value, "HR@20": value, "MRR": value}
            finish_run(db, run.id, "done", result={"test": metrics, "val": metrics}, best_epoch=10, epochs_run=16,
                       seconds=3.0, ending="early_stopped")


def test_compare_names_the_winner_of_a_paired_test(app_server, app_db, page, artifacts):
    _planted_runs(app_db)
    open_page(page, app_server, "compare")
    main = page.locator('[data-testid="stMain"]')
    main.get_by_role("combobox", name="Study").click()
    page.get_by_role("option", name="first-hour").click()
    page.keyboard.press("Escape")
    wait_for_app(page)
    expect(main.get_by_role("combobox", name="Baseline to beat")).to_have_count(1)
    winner = main.get_by_text(re.compile(r"^Winner: gate · demo-topics · layers 2 · demo beats id · demo by \+0\.80"))
    expect(winner).to_have_count(1)
    expect(main.get_by_text("6 finished runs match", exact=False)).to_have_count(1)
    _no_exception(page)
    shot(page, artifacts, "first-hour-compare")


def test_jobs_shows_the_capped_warning_in_full(app_server, app_db, page, artifacts):
    from jobs import submit
    from storage.queue import get_job

    job_id = submit.enqueue_train(app_db, "demo", "id", None, None, {"epochs": 2, "patience": 5,
                                                                    "batch_size": 1024}, seed=7)
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while get_job(app_db, job_id).status != "done" and time.monotonic() < deadline:
        time.sleep(1)
    assert get_job(app_db, job_id).status == "done"
    open_page(page, app_server, "jobs")
    main = page.locator('[data-testid="stMain"]')
    main.get_by_role("combobox", name="Job").click()
    page.get_by_role("option").filter(has_text=re.compile(rf"^#{job_id} train")).click()
    wait_for_app(page)
    expect(main.get_by_text(f"Job #{job_id} · train · done · capped while improving")).to_have_count(1)
    warning = main.get_by_text(re.compile(r"hit its epoch cap \(2 epochs\) while still improving"))
    expect(warning).to_have_count(1)
    text = warning.inner_text()
    assert "higher Epochs cap on the Train page" in text and "--epochs" not in text
    box = warning.bounding_box()
    assert box and box["width"] < 1440                                  # wrapped inside the page, not cut
    expect(main.get_by_text(re.compile(r"^100% · capped while improving after 2 epochs"))).to_have_count(1)
    _no_exception(page)
    shot(page, artifacts, "first-hour-jobs")


def test_every_page_after_the_changes(app_server, page, artifacts):
    for slug in PAGES:
        open_page(page, app_server, slug)
        _no_exception(page)
        shot(page, artifacts, f"first-hour-page-{slug or 'home'}")
