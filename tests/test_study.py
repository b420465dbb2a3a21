"""Study mode: the plan a study queues, verdicts on synthetic stored runs with known answers, the report."""
from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

from data_helpers import write_generic
from jobs.datasets import import_generic
from dff_core.study import plan as study_plan
from dff_core.study.plan import StudyRequest, even_layers, plan_runs, sweep_params
from jobs.study import queue_study
from dff_core.study.report import figure_weights, render_html, runs_csv, spread_table, verdicts_csv
from dff_core.study.verdicts import (CONTRADICTED, INCONCLUSIVE, SUPPORTED, UNDER_TRAINED, Comparison, compare,
                                     evaluate, layer_curve, sign_flip_p, study_from_runs_csv, weights_table)
from jobs.study import load_study
from storage import queue
from jobs.handlers import expand_sweep
from storage.features import create_feature_set, finish_feature_set, write_vectors
from storage.runs import create_run, finish_run

NUM_LAYERS = 7  # layers 0..6; last = 6


@pytest.fixture
def dataset(db, tmp_path):
    return import_generic(db, "d", *write_generic(tmp_path / "d", n_users=40, n_items=30, seq=8))


@pytest.fixture
def feature_sets(db, dataset):
    rng = np.random.default_rng(0)
    items = dataset.stats["items"]
    hidden = create_feature_set(db, "d", "hs", "synthetic", NUM_LAYERS, 8)
    write_vectors(db, hidden, np.arange(items), rng.normal(size=(items, NUM_LAYERS, 8)).astype(np.float32))
    finish_feature_set(db, hidden, "complete")
    caps = create_feature_set(db, "d", "caps", "synthetic -> text", 1, 6, kind="caption")
    write_vectors(db, caps, np.arange(items), rng.normal(size=(items, 1, 6)).astype(np.float32))
    finish_feature_set(db, caps, "complete")
    return hidden, caps


# ------------------------------------------------------------------------------------------------ plan

def test_even_layers_always_include_first_and_last():
    assert even_layers(31, 7) == [0, 5, 10, 15, 20, 25, 30]
    assert even_layers(5, 7) == [0, 1, 2, 3, 4]
    assert even_layers(13, 4) == [0, 4, 8, 12]
    with pytest.raises(ValueError, match="at least 2"):
        even_layers(31, 1)


def test_plan_covers_the_three_findings():
    runs = plan_runs(StudyRequest("d", "hs", captions="caps"), 31)
    roles = [r["role"] for r in runs]
    assert roles == ["id", "replace", "init", "caption", "gate@0", "gate@5", "gate@10", "gate@15", "gate@20",
                     "gate@25", "gate@30", "dff all", "dff 7-22"]
    by_role = {r["role"]: r for r in runs}
    assert by_role["replace"]["layers"] == by_role["init"]["layers"] == "30"  # same layer as gate@last
    assert by_role["caption"]["features"] == "caps" and by_role["gate@30"]["features"] == "hs"
    assert by_role["id"]["features"] is None


def test_plan_adds_the_last_layer_and_checks_ranges():
    runs = plan_runs(StudyRequest("d", "hs", layers=[2, 4], intermediate=(1, 3)), 7)
    assert [r["role"] for r in runs] == ["id", "replace", "init", "gate@2", "gate@4", "gate@6", "dff all", "dff 1-3"]
    with pytest.raises(ValueError, match="outside 0..6"):
        plan_runs(StudyRequest("d", "hs", layers=[2, 9]), 7)
    with pytest.raises(ValueError, match="intermediate range"):
        plan_runs(StudyRequest("d", "hs", intermediate=(3, 8)), 7)


def test_sweep_params_expand_seed_by_seed():
    params = sweep_params(StudyRequest("d", "hs", captions="caps", seeds=[1, 2, 3], layer_points=3,
                                       extra_settings={"hidden": 16}), 7)
    assert params["settings"] == {"hidden": 16, "epochs": 200, "patience": 5}  # a generous cap: early stopping ends runs
    jobs = expand_sweep(params)
    per_seed = len(params["runs"])
    assert per_seed == 3 + 1 + 3 + 2  # id replace init, caption, gate@0,3,6, dff all + 1-4
    assert len(jobs) == 3 * per_seed
    assert [j["seed"] for j in jobs] == [1] * per_seed + [2] * per_seed + [3] * per_seed
    assert all(j["study"] == "study-d-hs" for j in jobs)
    assert {(j["strategy"], j["layers"]) for j in jobs if j["strategy"] == "dff"} == {("dff", "all"), ("dff", "1-4")}


def test_queue_study_queues_one_sweep_and_refuses_bad_requests(db, feature_sets):
    job_id = queue_study(db, StudyRequest("d", "hs", captions="caps", seeds=[1, 2], name="s1"))
    jobs = queue.list_jobs(db, group="s1")
    assert [j.id for j in jobs] == [job_id] and jobs[0].kind == "sweep"
    assert jobs[0].params["plan"]["num_layers"] == NUM_LAYERS
    with pytest.raises(ValueError, match="already has runs or queued jobs"):
        queue_study(db, StudyRequest("d", "hs", name="s1"))
    with pytest.raises(ValueError, match="caption embedding"):
        queue_study(db, StudyRequest("d", "caps", name="s2"))
    with pytest.raises(Exception, match="nope"):
        queue_study(db, StudyRequest("d", "nope", name="s3"))


# --------------------------------------------------------------------------------------------- verdicts

def test_compare_rules():
    a = pd.Series([0.20, 0.22, 0.21], index=[1, 2, 3])
    b = pd.Series([0.10, 0.11, 0.105], index=[1, 2, 3])
    assert compare(Comparison(1, "x", "a > b", "a", "b"), a, b).verdict == SUPPORTED
    assert compare(Comparison(1, "x", "b > a", "b", "a"), b, a).verdict == CONTRADICTED
    noisy = pd.Series([0.30, 0.05, 0.21], index=[1, 2, 3])
    c = compare(Comparison(1, "x", "noisy > b", "noisy", "b"), noisy, b)
    assert c.verdict == INCONCLUSIVE and c.p >= 0.05
    two = compare(Comparison(1, "x", "a > b", "a", "b"), a.loc[[1, 2]], b.loc[[1, 2]])
    assert two.verdict == INCONCLUSIVE and two.n == 2 and "at least 3" in two.reason
    missing = compare(Comparison(1, "x", "a > b", "a", "b"), a, pd.Series(dtype=float))
    assert missing.verdict == INCONCLUSIVE and "no finished runs for b" in missing.reason
    # pairs by seed: seed 4 of ``a`` has no partner
    c = compare(Comparison(1, "x", "a > b", "a", "b"), pd.concat([a, pd.Series([9.0], index=[4])]), b)
    assert c.n == 3 and c.seeds == [1, 2, 3]


def test_sign_flip_p_is_exact():
    assert sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 8)
    assert sign_flip_p(np.array([1.0, -1.0])) == pytest.approx(1.0)


# role -> per-seed test NDCG@10 (val = test + small offset); gate@k = single-layer curve
SUPPORTING = {"id": 0.100, "replace": 0.060, "init": 0.090, "caption": 0.080, "gate@0": 0.095, "gate@2": 0.130,
              "gate@4": 0.150, "gate@6": 0.110, "dff all": 0.170, "dff 1-4": 0.165}
CONTRADICTING = {"id": 0.060, "replace": 0.130, "init": 0.120, "caption": 0.140, "gate@0": 0.080, "gate@2": 0.090,
                 "gate@4": 0.095, "gate@6": 0.110, "dff all": 0.070, "dff 1-4": 0.075}


def store_study(db, hidden, caps, means: dict, seeds=(1, 2, 3), noise=0.002, study="syn", seed=0,
                missing: tuple = (), capped: tuple = ()):
    """Stored, finished runs for each role with per-seed values ``mean + noise``; DFF runs get layer weights.
    Roles in ``capped`` hit their 5-epoch cap while still improving (best epoch 5); the others early-stopped."""
    rng = np.random.default_rng(seed)
    for role, mean in means.items():
        if role in missing:
            continue
        strategy, layers, fs = {"id": ("id", None, None), "replace": ("replace", [6], hidden),
                                "init": ("init", [6], hidden), "caption": ("caption", [0], caps),
                                "dff all": ("dff", list(range(7)), hidden),
                                "dff 1-4": ("dff", [1, 2, 3, 4], hidden)}.get(
            role, ("gate", [int(role[5:])] if role.startswith("gate@") else None, hidden))
        for s in seeds:
            test = mean + rng.normal(0, noise)
            val = test + rng.normal(0, noise / 2)
            run = create_run(db, 1, strategy, {"feature_set": fs.name if fs else None, "epochs": 5, "patience": 2},
                             feature_set_id=fs.id if fs else None, layers=layers, seed=s, study=study)
            weights = ({str(l): 1 / len(layers) + 0.01 * (l - 3) for l in layers} if strategy == "dff" else None)
            buckets = {"cold": {"users": 5, "metrics": {"NDCG@10": test / 3}},
                       "warm": {"users": 35, "metrics": {"NDCG@10": test * 1.1}}}
            finish_run(db, run.id, "done", result={"val": {"NDCG@10": val}, "test": {"NDCG@10": test},
                                                   "test_buckets": buckets, "layer_weights": weights},
                       best_epoch=5 if role in capped else 3, epochs_run=5, seconds=2.0, seconds_per_epoch=0.4,
                       ending="capped_improving" if role in capped else "early_stopped")


def verdicts(db, study="syn"):
    data = load_study(db, study)
    return data, {f.number: f for f in evaluate(data)}


def test_known_supported_study(db, feature_sets):
    store_study(db, *feature_sets, SUPPORTING)
    data, found = verdicts(db)
    assert data.num_layers == NUM_LAYERS and data.features == "hs" and len(data.runs) == 3 * len(SUPPORTING)
    assert {f: found[f].verdict for f in found} == {1: SUPPORTED, 2: SUPPORTED, 3: SUPPORTED}
    parts = {c.part: c for f in found.values() for c in f.parts}
    assert (parts["3a"].a, parts["3a"].b) == ("gate@4", "gate@6")   # best intermediate chosen on val
    assert (parts["1a"].a, parts["1a"].b, parts["1b"].a) == ("gate@4", "caption", "gate@6")
    assert (parts["3b"].a, parts["3b"].b) == ("dff all", "gate@4")
    assert parts["3c"].a == "dff 1-4" and parts["3c"].verdict == SUPPORTED
    assert parts["2a"].mean_a == pytest.approx(0.100, abs=0.005) and parts["2a"].n == 3
    assert all(c.p < 0.05 for c in parts.values())
    curve = layer_curve(data)
    assert curve["layer"].tolist() == [0, 2, 4, 6] and (curve["seeds"] == 3).all()
    assert curve.loc[curve["layer"] == 4, "test mean"].iloc[0] == pytest.approx(0.150, abs=0.005)
    w = weights_table(data)
    assert set(w["role"]) == {"dff all", "dff 1-4"} and len(w[w["role"] == "dff all"]) == 7


def test_known_contradicted_study(db, feature_sets):
    store_study(db, *feature_sets, CONTRADICTING)
    _, found = verdicts(db)
    assert {f: found[f].verdict for f in found} == {1: CONTRADICTED, 2: CONTRADICTED, 3: CONTRADICTED}
    parts = {c.part: c for f in found.values() for c in f.parts}
    assert parts["3a"].b == "gate@6" and parts["3a"].verdict == CONTRADICTED  # last layer wins
    assert parts["2a"].diff < 0


def test_inconclusive_with_noise_two_seeds_or_missing_roles(db, feature_sets):
    store_study(db, *feature_sets, SUPPORTING, noise=0.2, study="noisy", seed=3)
    _, found = verdicts(db, "noisy")
    assert found[1].verdict == INCONCLUSIVE
    store_study(db, *feature_sets, SUPPORTING, seeds=(1, 2), study="two")
    _, found = verdicts(db, "two")
    assert all(f.verdict == INCONCLUSIVE for f in found.values())
    assert all(c.n == 2 and c.verdict == INCONCLUSIVE for f in found.values() for c in f.parts)
    store_study(db, *feature_sets, SUPPORTING, study="nocap", missing=("caption",))
    _, found = verdicts(db, "nocap")
    assert found[1].verdict == INCONCLUSIVE and found[2].verdict == SUPPORTED
    assert any("caption" in n for n in found[1].notes)


def test_capped_runs_cannot_decide_a_planted_flip(db, feature_sets, tmp_path):
    """Capped runs say id >> replace and DFF >> best layer (the t-test would support both); trained to
    early stopping, the same roles say the opposite. Capped, the parts are under-trained — never supported —
    and so are their findings; converged, the verdict flips to contradicted."""
    capped_means = dict(SUPPORTING)
    store_study(db, *feature_sets, capped_means, study="capped", capped=("id", "replace", "dff all", "dff 1-4"))
    converged = {**SUPPORTING, "id": 0.050, "replace": 0.120, "dff all": 0.100, "dff 1-4": 0.100}
    store_study(db, *feature_sets, converged, study="converged")
    data, found = verdicts(db, "capped")
    parts = {c.part: c for f in found.values() for c in f.parts}
    assert parts["2a"].verdict == UNDER_TRAINED and parts["2a"].under_trained == 6 and parts["2a"].p < 0.05
    assert "t-test says supported" in parts["2a"].reason and "6 of 6 runs" in parts["2a"].reason
    assert parts["3b"].verdict == UNDER_TRAINED and parts["3b"].under_trained == 3   # dff all capped, gate@4 not
    assert parts["2b"].verdict == UNDER_TRAINED and parts["2b"].under_trained == 3   # replace capped
    assert parts["2c"].verdict == SUPPORTED and parts["3a"].verdict == SUPPORTED     # no capped run: decided
    assert (found[2].verdict, found[2].under_trained) == (UNDER_TRAINED, 6)
    assert found[3].verdict == UNDER_TRAINED and found[1].verdict == SUPPORTED
    _, flipped = verdicts(db, "converged")
    assert flipped[2].verdict == CONTRADICTED and flipped[3].verdict == CONTRADICTED
    # the report says so next to each verdict, and the CSVs carry the counts and endings
    page = render_html(data)
    assert "under-trained · 6 runs capped while improving" in page and "12 of 30 runs hit the epoch cap" in page
    v = pd.read_csv(io.StringIO(verdicts_csv(evaluate(data))))
    assert v.set_index("part").loc["2a", ["verdict", "under_trained"]].tolist() == [UNDER_TRAINED, 6]
    runs = pd.read_csv(io.StringIO(runs_csv(data)))
    assert (runs["ending"] == "capped_improving").sum() == 12
    # re-judging from the exported runs CSV alone, without its ending column, gives the same verdicts
    path = tmp_path / "runs.csv"
    runs.drop(columns=["ending"]).to_csv(path, index=False)
    again = study_from_runs_csv(path, NUM_LAYERS, epochs=5, patience=2)
    assert (again.runs.sort_values("run_id")["ending"].tolist()
            == data.runs.sort_values("run_id")["ending"].tolist())
    assert {f.number: f.verdict for f in evaluate(again)} == {f: found[f].verdict for f in found}


def test_unknown_study_is_a_clear_error(db, feature_sets):
    from storage import NotFound
    with pytest.raises(NotFound, match="no study named 'zzz'"):
        load_study(db, "zzz")


# ---------------------------------------------------------------------------------------------- report

def test_html_report_is_self_contained_and_has_each_verdict(db, feature_sets):
    store_study(db, *feature_sets, SUPPORTING)
    store_study(db, *feature_sets, CONTRADICTING, study="con")
    data = load_study(db, "syn")
    page = render_html(data, compute_note="2 CPU cores")
    assert not re.search(r"<script[^>]+src=", page) and "<link" not in page
    assert page.count("Plotly.newPlot") == 4  # layer curve, run types, DFF weights, cold/warm
    assert page.count("window.Plotly") >= 1 and len(page) > 3_000_000 // 1000  # plotly.js inlined
    for n in (1, 2, 3):
        assert f"Finding {n}:" in page
    assert page.count(">supported</span>") >= 3 and "2 CPU cores" in page
    # the weights' spread beside the weights: these DFF runs stayed near uniform (max 1/7 + 0.03 of 7 layers)
    spread = spread_table(data)
    assert len(spread) == 6 and set(spread["role"]) == {"dff all", "dff 1-4"}
    dff_all = spread[spread["role"] == "dff all"]
    assert dff_all["max / uniform"].tolist() == pytest.approx([7 * (1 / 7 + 0.03)] * 3)
    assert (dff_all["top layer"] == 6).all() and (dff_all["reading"] == "averaged").all()
    assert "max / uniform" in page and "<td>averaged</td>" in page
    assert "dff all: max / uniform 1.21" in figure_weights(data).layout.title.text
    con = render_html(load_study(db, "con"))
    assert ">contradicted</span>" in con and ">supported</span>" not in con


def test_plotly_js_is_embedded_exactly_once(db, feature_sets):
    store_study(db, *feature_sets, SUPPORTING)
    page = render_html(load_study(db, "syn"))
    import plotly
    marker = f"plotly.js v{plotly.offline.get_plotlyjs_version()}"
    assert page.count(marker) == 1


def test_csv_exports(db, feature_sets):
    store_study(db, *feature_sets, SUPPORTING)
    data = load_study(db, "syn")
    v = pd.read_csv(io.StringIO(verdicts_csv(evaluate(data))))
    assert list(v.columns[:5]) == ["finding", "finding_title", "finding_verdict", "part", "claim"]
    assert v["part"].tolist() == ["1a", "1b", "2a", "2b", "2c", "3a", "3b", "3c"]
    assert set(v["verdict"]) == {SUPPORTED} and (v["n"] == 3).all()
    r = pd.read_csv(io.StringIO(runs_csv(data)))
    assert len(r) == 3 * len(SUPPORTING)
    assert {"run_id", "role", "strategy", "layers", "seed", "test NDCG@10", "cold NDCG@10", "warm NDCG@10"} <= set(r.columns)
    assert sorted(r.loc[r["role"] == "gate@4", "seed"]) == [1, 2, 3]


# ------------------------------------------------------------------------------------------ end to end

def test_cli_study_end_to_end_trains_every_planned_run(db, feature_sets, tmp_path, capsys):
    """Queue through the CLI, run the sweep's train jobs in-process, render the report from stored runs."""
    from cli import main
    from jobs.workflows import run_training

    assert main(["--db", str(db.path), "study", "--dataset", "d", "--features", "hs", "--captions", "caps",
                 "--seeds", "1", "--layers", "3", "--range", "2-4", "--epochs", "1", "--hidden", "16",
                 "--name", "e2e"]) == 0
    sweep = queue.list_jobs(db, group="e2e")[0]
    jobs = expand_sweep(sweep.params)
    assert [(j["strategy"], j["layers"]) for j in jobs] == [
        ("id", None), ("replace", "6"), ("init", "6"), ("caption", "all"), ("gate", "3"), ("gate", "6"),
        ("dff", "all"), ("dff", "2-4")]
    for p in jobs:
        run_training(db, p["dataset"], p["strategy"], features=p["features"], layers=p["layers"],
                     settings={**p["settings"], "num_threads": 1}, seed=p["seed"], study=p["study"])
    html_path, csv_path = tmp_path / "out" / "r.html", tmp_path / "out" / "v.csv"
    capsys.readouterr()
    assert main(["--db", str(db.path), "study", "--report", "e2e", "--html", str(html_path),
                 "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "8 finished runs" in out and "finding 3:" in out
    assert html_path.read_text().count("Plotly.newPlot") == 4
    v = pd.read_csv(csv_path)
    # one epoch: every run hit the cap while still improving, so nothing is decided
    assert len(v) == 8 and set(v["verdict"]) == {UNDER_TRAINED} and (v["under_trained"] == 2).all()
    assert set(pd.read_csv(io.StringIO(runs_csv(load_study(db, "e2e"))))["ending"]) == {"capped_improving"}


def test_cli_user_errors(db, feature_sets, capsys):
    from cli import main
    assert main(["--db", str(db.path), "study", "--dataset", "d"]) == 2
    assert "--features" in capsys.readouterr().err
    assert main(["--db", str(db.path), "study", "--dataset", "d", "--features", "hs", "--seeds", "x"]) == 2
    assert main(["--db", str(db.path), "study", "--report", "missing"]) == 2
    assert "no study named" in capsys.readouterr().err
    assert main(["--db", str(db.path), "study", "--dataset", "d", "--features", "hs", "--dry-run"]) == 0
    assert "12 runs x 3 seeds = 36 training runs" in capsys.readouterr().out


def test_subsample_keeps_whole_sequences_and_copies_features(db, feature_sets):
    from jobs.subsample import subsample_dataset
    from storage.datasets import get_dataset, load_interactions, load_items
    from jobs.reads import load_split
    from storage.features import get_feature_set, read_features

    out = subsample_dataset(db, "d", "d-half", users=20, seed=7, feature_sets=["hs"], log=lambda line: None)
    assert out["users"] == 20 and out["feature_sets"] == ["hs"]
    src, dst = get_dataset(db, "d"), get_dataset(db, "d-half")
    assert dst.params["subsample"] == {"source": "d", "users": 20, "seed": 7}
    # every kept user keeps the whole sequence in order, so the leave-one-out targets are unchanged
    sid = lambda ds: np.asarray(load_items(db, ds.id)["item_id"].tolist(), dtype=str)  # noqa: E731
    s_items, d_items = sid(src), sid(dst)
    s_split, d_split = load_split(db, src.id), load_split(db, dst.id)
    s_seq = {tuple(s_items[np.r_[t, v, x]]) for t, v, x in zip(s_split.train, s_split.val_target, s_split.test_target)}
    d_seq = [tuple(d_items[np.r_[t, v, x]]) for t, v, x in zip(d_split.train, d_split.val_target, d_split.test_target)]
    assert len(d_seq) == 20 and all(seq in s_seq for seq in d_seq)
    assert out["items"] == len(np.unique(load_interactions(db, dst.id)["item_idx"]))
    # the copied vectors belong to the same external item ids
    f_src, _ = read_features(db, get_feature_set(db, "hs", dataset="d"))
    f_dst, present = read_features(db, get_feature_set(db, "hs", dataset="d-half"))
    assert present.all() and f_dst.shape == (out["items"], NUM_LAYERS, 8)
    pos = {item: i for i, item in enumerate(s_items)}
    np.testing.assert_allclose(f_dst, f_src[[pos[i] for i in d_items]], rtol=1e-3)
    # the same seed draws the same users
    again = subsample_dataset(db, "d", "d-half-2", users=20, seed=7, log=lambda line: None)
    assert again["items"] == out["items"] and again["interactions"] == out["interactions"]
    with pytest.raises(ValueError, match="already exists"):
        subsample_dataset(db, "d", "d-half", users=5)
    with pytest.raises(ValueError, match="only 40 users"):
        subsample_dataset(db, "d", "d-all", users=40)


def test_cli_train_json_says_how_the_run_ended_and_warns_when_capped(db, dataset, capsys):
    import json

    from cli import main

    assert main(["--db", str(db.path), "train", "--dataset", "d", "--strategy", "id", "--epochs", "1",
                 "--hidden", "16", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert (out["ending"], out["epochs"], out["best_epoch"], out["epoch_cap"]) == ("capped_improving", 1, 1, 1)
    assert "hit the epoch cap (1) while still improving" in captured.err
    from storage.runs import get_run
    assert get_run(db, out["run_id"]).ending == "capped_improving"
