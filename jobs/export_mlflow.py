"""Stored runs into MLflow, the self-hosted tracker researchers already use.

Each DFF Studio run becomes one MLflow run in the experiment ``dff-<dataset>`` (or ``experiment``):

* params: dataset, feature set, backbone, strategy, layers, seed, study, engine, device and every training
  setting of the run's config;
* metrics with their step (= epoch): ``train_loss``, ``train_seconds``, ``val_<metric>``, the DFF layer
  weights as ``layer_weight_<L>`` (L = stored layer number, 0 = embedding output); final ``best_val_<metric>``
  and ``test_<metric>`` at the best epoch (metric names spell ``@`` as ``_at_``: ``val_NDCG_at_10``);
* tags linking back: ``dff.run_id``, ``dff.db`` (the database path), ``dff.status``; the run's MLflow
  status follows (done -> FINISHED, failed -> FAILED, cancelled -> KILLED, running -> RUNNING).

Re-exporting updates instead of duplicating: a run is found by its tags ``dff.run_id`` and ``dff.db_key``
(a hash of the database path), only new params are logged (MLflow params are immutable) and only metric
points whose (name, step) MLflow does not have yet, or whose value changed, are sent.

Optional dependency: ``pip install -r requirements-mlflow.txt`` (``mlflow-skinny`` and ``alembic``). A folder
target becomes MLflow's recommended store in that folder: the SQLite database ``FOLDER/mlflow.db`` with the
artifacts under ``FOLDER/artifacts``, which MLflow 3 opens as it is (``mlflow ui --backend-store-uri
sqlite:///FOLDER/mlflow.db``), with no opt-in variable (its file store needs ``MLFLOW_ALLOW_FILE_STORE``). Any
tracking URI (``http://host:5000``, ``sqlite:///path.db``, ``databricks``, a ``file:`` store on purpose) is
passed through.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from storage import Database

STATUS = {"done": "FINISHED", "failed": "FAILED", "cancelled": "KILLED", "interrupted": "KILLED",
          "running": "RUNNING"}
PARAM_SKIP = {"layers", "feature_set", "backbone", "sweep_key"}  # logged under their own names
STORE_FILE = "mlflow.db"      # a folder target's SQLite store ...
ARTIFACTS = "artifacts"       # ... and its artifact root, both inside the folder


class MlflowUnavailable(ValueError):
    """MLflow is not installed (it is optional); a user error: one line, exit 2."""


def store_folder(target: str) -> Path | None:
    """The folder of a folder target (absolute), or None for a tracking URI (``scheme:...``, ``databricks``)."""
    target = str(target).strip()
    if not target:
        raise ValueError("say where to export: --mlflow DIR (a folder) or a tracking URI (http://host:5000)")
    if "://" in target or target in ("databricks",) or target.startswith(("file:", "sqlite:")):
        return None
    path = Path(target).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; give a folder for the MLflow store (or a tracking URI)")
    return path


def tracking_uri(target: str) -> str:
    """A URI (``scheme://...``, ``databricks``) as given; a folder as its SQLite store,
    ``sqlite:////abs/FOLDER/mlflow.db`` (what ``mlflow ui --backend-store-uri`` takes)."""
    folder = store_folder(target)
    return str(target).strip() if folder is None else f"sqlite:///{(folder / STORE_FILE).as_posix()}"


def export_dir(db_path: str | Path, text: str) -> Path:
    """The folder a dashboard user typed for an MLflow export, confined to the export root.

    The root is ``DFF_EXPORT_ROOT`` when set, else the database's folder: a relative path lands under it,
    an absolute one must lie inside it, and tracking URIs are refused (the command line takes those), so a
    browser can only write MLflow files next to the data it already has."""
    text = (text or "").strip()
    if not text:
        raise ValueError("type a folder for the MLflow store, e.g. mlruns")
    if "://" in text or text.startswith("file:"):
        raise ValueError("the dashboard exports to a folder; for a tracking server use "
                         "python -m dff_core export-runs --mlflow URI")
    root = Path(os.environ.get("DFF_EXPORT_ROOT") or Path(db_path).parent).expanduser().resolve()
    path = (root / Path(text).expanduser()).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"export folders must be inside {root}; give a path relative to it, e.g. mlruns")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; give a folder")
    return path


def metric_name(prefix: str, name: str) -> str:
    return f"{prefix}_{name.replace('@', '_at_')}"


def _client(uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise MlflowUnavailable("exporting to MLflow needs it: pip install -r requirements-mlflow.txt") from exc
    if uri.startswith("sqlite:"):
        try:
            import alembic  # noqa: F401 - MLflow's SQL stores migrate their schema with it
        except ImportError as exc:
            raise MlflowUnavailable("a SQLite MLflow store needs alembic: pip install -r requirements-mlflow.txt") \
                from exc
        for name in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..." and
            logging.getLogger(name).setLevel(logging.WARNING)  # each migration step: not for the export's output
    elif uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store named as a URI: asked for on purpose
    return MlflowClient(tracking_uri=uri)


def _artifacts(folder: Path | None, experiment: str) -> str | None:
    """A new experiment's artifact location: ``FOLDER/artifacts/<experiment, as a safe file name>`` for a folder
    target (MLflow's default would be ``./mlruns`` under whatever folder the export ran in); None for a URI."""
    if folder is None:
        return None
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in experiment).strip(".") or "experiment"
    return (folder / ARTIFACTS / safe[:100]).as_uri()


def _ms(ts) -> int | None:
    return int(ts.timestamp() * 1000) if ts is not None and hasattr(ts, "timestamp") else None


def export_runs(db: Database, target: str, *, dataset: str | None = None, study: str | None = None,
                run_ids: list[int] | None = None, experiment: str | None = None) -> dict:
    """Write the selected runs (all by default; ``dataset``/``study``/``run_ids`` narrow it) to MLflow.

    Returns ``{tracking_uri, runs, created, updated, mlflow_ids: {run_id: mlflow run id}}``."""
    try:
        from mlflow.entities import Metric, Param, RunTag
    except ImportError as exc:  # one line, exit 2 (a ValueError), like _client's
        raise MlflowUnavailable("exporting to MLflow needs it: pip install -r requirements-mlflow.txt") from exc

    from storage.features import list_feature_sets
    from storage.runs import list_runs, run_metrics
    from storage.views import layers_text, run_summaries

    folder = store_folder(target)
    uri = tracking_uri(target)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    client = _client(uri)
    rows = run_summaries(db, dataset=dataset, study=study)
    if run_ids is not None:
        wanted = {int(r) for r in run_ids}
        rows = [r for r in rows if r["run_id"] in wanted]
    records = {r.id: r for r in list_runs(db)}
    fsets = {fs.id: fs for fs in list_feature_sets(db)}
    db_path = str(db.path.resolve())
    db_key = hashlib.sha1(db_path.encode()).hexdigest()[:16]
    metrics = run_metrics(db, [r["run_id"] for r in rows]) if rows else None
    out = {"tracking_uri": uri, "runs": 0, "created": 0, "updated": 0, "mlflow_ids": {}}
    experiments: dict[str, str] = {}
    for row in rows:
        rec = records[row["run_id"]]
        name = experiment or f"dff-{row['dataset']}"
        if name not in experiments:
            exp = client.get_experiment_by_name(name)
            experiments[name] = exp.experiment_id if exp else client.create_experiment(
                name, tags={"dff.db": db_path},  # a folder's artifacts stay in it (MLflow's default: ./mlruns)
                artifact_location=_artifacts(folder, name))
        exp_id = experiments[name]
        found = client.search_runs([exp_id], filter_string=f"tags.`dff.run_id` = '{rec.id}' and "
                                                           f"tags.`dff.db_key` = '{db_key}'", max_results=2)
        label = f"#{rec.id} {rec.strategy} {layers_text(rec.layers) if rec.strategy != 'id' else ''} s{rec.seed}"
        tags = {"dff.run_id": str(rec.id), "dff.db": db_path, "dff.db_key": db_key, "dff.status": rec.status,
                "dff.study": rec.study or "", "mlflow.runName": " ".join(label.split())}
        if found:
            ml_run = found[0]
            out["updated"] += 1
        else:
            ml_run = client.create_run(exp_id, start_time=_ms(rec.created_at), tags=tags)
            out["created"] += 1
        ml_id = ml_run.info.run_id
        fs = fsets.get(rec.feature_set_id)
        params = {"dataset": row["dataset"], "feature_set": row["features"] or "",
                  "backbone": (fs.backbone if fs else rec.config.get("backbone")) or "",
                  "strategy": rec.strategy, "layers": layers_text(rec.layers) if rec.strategy != "id" else "",
                  "seed": rec.seed, "study": rec.study or "", "engine": row["engine"]}
        params.update({k: v for k, v in rec.config.items() if k not in PARAM_SKIP and k not in params})
        have = ml_run.data.params if found else {}
        new_params = [Param(k, str(v)) for k, v in params.items() if k not in have]
        points = _metric_points(rec, metrics[metrics["run_id"] == rec.id] if metrics is not None else None)
        existing: dict[tuple[str, int], float] = {}
        if found:
            for key in {k for k, _, _ in points} & set(ml_run.data.metrics):
                existing.update({(key, m.step): m.value for m in client.get_metric_history(ml_id, key)})
        stamp = _ms(rec.finished_at) or _ms(rec.created_at) or 0
        new_metrics = [Metric(k, float(v), stamp, int(step)) for k, step, v in points
                       if existing.get((k, int(step))) != float(v)]
        new_tags = [RunTag(k, v) for k, v in tags.items() if not found or ml_run.data.tags.get(k) != v]
        for i in range(0, max(len(new_metrics), 1), 900):  # MLflow takes at most 1000 entries per batch
            client.log_batch(ml_id, metrics=new_metrics[i:i + 900], params=new_params if i == 0 else [],
                             tags=new_tags if i == 0 else [])
        status = STATUS.get(rec.status, "RUNNING")
        if status != "RUNNING":
            client.set_terminated(ml_id, status, end_time=_ms(rec.finished_at))
        out["runs"] += 1
        out["mlflow_ids"][rec.id] = ml_id
    return out


def _metric_points(rec, m) -> list[tuple[str, int, float]]:
    """(name, step, value) for every stored per-epoch metric and the final values of a finished run."""
    points: list[tuple[str, int, float]] = []
    if m is not None:
        for r in m.itertuples():
            if r.split == "train":
                points.append((metric_name("train", r.name), int(r.epoch), float(r.value)))
            elif r.split == "val":
                points.append((metric_name("val", r.name), int(r.epoch), float(r.value)))
            elif r.split == "layer_weight":
                points.append((f"layer_weight_{r.name}", int(r.epoch), float(r.value)))
    res = rec.result or {}
    best = int(rec.best_epoch or 0)
    for split, prefix in (("val", "best_val"), ("test", "test")):
        for k, v in (res.get(split) or {}).items():
            points.append((metric_name(prefix, k), best, float(v)))
    for layer, w in (res.get("layer_weights") or {}).items():  # the final learned weights
        points.append((f"final_layer_weight_{layer}", best, float(w)))
    return points
