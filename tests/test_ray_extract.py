"""The Ray engine on a local 2-CPU instance: the same vectors as the local engine (allclose), failed items
recorded and returned to the driver, resume skips stored items, progress and cancel reach the caller.

One Ray instance serves the whole module (starting one costs seconds); the dataset is eight titled items
and one without a title, encoded by the small built-in MiniLM."""
from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray engine is optional: pip install -r requirements-ray.txt")

import cli  # noqa: E402
from jobs.datasets import import_generic  # noqa: E402
from dff_core.extraction import ray_engine  # noqa: E402
from storage import Database  # noqa: E402
from storage.features import failures, get_feature_set, read_features, stored_items  # noqa: E402

BACKBONE = "minilm"
N_ITEMS = 9
NO_TITLE = "i4"


@pytest.fixture(scope="module")
def titled(tmp_path_factory):
    """A database with N_ITEMS items, one of them without a title (the item that must fail)."""
    folder = tmp_path_factory.mktemp("ray")
    rows = ["user_id,item_id,timestamp"]
    for u in range(6):
        rows += [f"u{u},i{(u + 2 * k) % N_ITEMS},{k}" for k in range(6)]
    (folder / "inter.csv").write_text("\n".join(rows) + "\n")
    topics = ["cats playing piano", "mountain bike downhill", "street food in Bangkok", "knitting a scarf",
              "", "jazz drum solo", "sunset timelapse", "chess endgame trick", "how to fold a shirt"]
    (folder / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},{t}\n" for i, t in enumerate(topics)))
    db = Database(folder / "t.duckdb")
    import_generic(db, "t", folder / "inter.csv", folder / "items.csv")
    return db


def _extract_cli(db, name, *extra) -> int:
    return cli.main(["--db", str(db.path), "extract", "--dataset", "t", "--backbone", BACKBONE, "--name", name,
                     "--inputs", "title", "--pooling", "all_mean", "--batch-size", "2", "--dtype", "float32", *extra])


def test_ray_engine_matches_the_local_engine_and_records_failures(local_ray, titled):
    db = titled
    assert _extract_cli(db, "local") == 0
    assert _extract_cli(db, "ray", "--engine", "ray", "--storage", "parquet") == 0
    local, remote = get_feature_set(db, "local"), get_feature_set(db, "ray")
    assert remote.storage == "parquet" and local.storage == "duckdb"
    assert (remote.num_layers, remote.dim) == (local.num_layers, local.dim) and remote.num_layers > 1
    a, a_mask = read_features(db, local)
    b, b_mask = read_features(db, remote)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert a_mask.sum() == N_ITEMS - 1
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert np.abs(a[a_mask]).sum(axis=-1).min() > 0  # real vectors, not zeros
    # the item without a title failed on a replica, came back to the driver and was recorded, not fatal
    from storage.datasets import load_items

    items = load_items(db, remote.dataset_id)
    bad = int(items.loc[items["item_id"] == NO_TITLE, "idx"].iloc[0])
    assert set(failures(db, remote)) == {bad} == set(failures(db, local))
    assert failures(db, remote)[bad]
    assert remote.status == "partial" and remote.stats["items"] == N_ITEMS - 1 and remote.stats["failed"] == 1


def test_resume_progress_and_cancel(local_ray, titled):
    from dff_core.extraction import ExtractItem
    from storage.datasets import load_items

    db = titled
    items = load_items(db, get_feature_set(db, "ray").dataset_id)
    work = [ExtractItem(idx=int(r.idx), item_id=str(r.item_id), title=r.title if isinstance(r.title, str) else None,
                        video_path=None, cover_path=None) for r in items.itertuples()]
    default = ray_engine.ray_backbone(BACKBONE)  # shape cached from the first test's remote load: no call
    assert not default.owns_ray and default.replicas == 2 and default.gpus_per_replica == 0  # one per CPU, max 2
    model = ray_engine.ray_backbone(BACKBONE, replicas=1)  # one actor to start is enough here
    assert (model.layers_for("all_mean"), model.layers_for("sentence"), model.dim) == (7, 1, 384)
    got: dict[int, np.ndarray] = {}
    failed: dict[int, str] = {}
    ticks: list[tuple[int, int]] = []
    skip = set(range(0, N_ITEMS, 3))

    def on_batch(idx, feats):
        got.update({i: f for i, f in zip(idx, feats)})

    summary = ray_engine.extract(model, work, inputs=("title",), pooling="all_mean", batch_size=2, skip=skip,
                                 on_batch=on_batch, on_failure=failed.__setitem__,
                                 progress=lambda done, total, info: ticks.append((done, total)),
                                 should_stop=lambda: True)  # asked to stop after the first written block
    assert summary.skipped == len(skip) and summary.cancelled
    assert not skip & (set(got) | set(failed))  # stored items are never sent again
    assert ticks and ticks[-1] == (len(got) + len(failed), N_ITEMS - len(skip))
    stored = read_features(db, get_feature_set(db, "ray"))[0]
    for i, f in got.items():
        np.testing.assert_allclose(f, stored[i], rtol=1e-4, atol=1e-5)
    assert set(stored_items(db, get_feature_set(db, "ray"))) >= set(got)


def test_clear_errors_for_what_the_ray_engine_does_not_do(titled, capsys):
    from jobs.workflows import run_extraction

    with pytest.raises(ValueError, match="local engine only"):
        run_extraction(titled, "t", BACKBONE, "cap", inputs=["title"], caption=True, engine="ray")
    with pytest.raises(ValueError, match="engine must be local or ray"):
        run_extraction(titled, "t", BACKBONE, "x", inputs=["title"], engine="spark")
    assert _extract_cli(titled, "x", "--address", "ray://head:10001") == 2
    assert "add --engine ray" in capsys.readouterr().err
