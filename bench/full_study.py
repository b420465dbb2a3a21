"""The whole-catalogue study in one command (issue 28): import, features, a precision check, captions, the study,
the layer-picker check and the report, each step skipped when its output exists, so a rerun continues.

    bench/full_study.sh --microlens ../shared/data/microlens --db data/full-study.duckdb --device cuda \\
        --seeds 3 --workers 4 --threads 4 --out docs/results/microlens50k-smollm2   # on a GPU: minutes
    PYTHONPATH=. .venv/bin/python bench/full_study.py --db data/full-study.duckdb --device cpu --threads 2 \\
        --out docs/results/microlens50k-smollm2            # on 2 CPU cores: ~7 h (study --dry-run estimates it)
    ... --dry-run                                          # what each step would do, nothing written
    ... --demo [--tiny] --seeds 1 --epochs 2               # the same pipeline on the built-in demo

Steps (``python -m dff_core`` commands unless said otherwise; one line each with its wall time):

1. ``dataset``: ``import-dataset NAME --microlens DIR`` (read by path, nothing copied into the repository), or the
   demo with ``--demo``.
2. ``features``: ``extract --backbone smollm2 --inputs title``: all hidden states of every title, in bfloat16 on
   CUDA and ``--compute-dtype auto`` on a CPU (bfloat16 where the CPU has it natively: README "Fast path:
   extraction" measured every layer's mean cosine to float32 >= 0.9999 there; float32 elsewhere).
3. ``precision``: the bound checked here: the same backbone in float32 over a seeded sample of titles (a scratch
   database), every layer's mean cosine against the stored vectors (``precision.csv``).
4. ``captions``: the caption route (``extract --caption``: SmolLM2 captions, MiniLM embeds them). With CUDA on
   every item of the dataset; on a CPU on a seeded user subsample (``study-sample``) whose items' captions fit
   ``--caption-minutes`` at ``--caption-rate`` items/s (or ``--caption-users N``).
5. ``study``: ``study`` (every role: id, replace, init, gate at the layer points, dff all, dff over the middle
   range; plus caption on the CUDA route) with ``--seeds``, every run to early stopping under the default cap,
   the default objective; queued, then ``worker --once`` (``--workers`` runs at a time). A rerun resumes
   interrupted jobs and retries failed ones.
6. ``caption-study``: CPU route only: the same study on the subsample with its caption set, so finding 1 is
   judged on one dataset (``captions-sample/`` in the report folder).
7. ``layer-picker``: the Train page's usefulness score (``jobs.probes.cached_layer_usefulness``) per layer
   against the measured single-layer (gate@L) test NDCG@10 over the study's layer points: Spearman, and which
   layer the score picks against the best measured (``layer-picker.csv``, ``layer-picker.txt``).
8. ``report``: ``study --report`` (``report.html``, ``verdicts.csv``, ``runs.csv``) and ``weights.csv``.

``compute.csv`` / ``compute.txt`` in ``--out`` hold every step's wall time, status and what it did, and the
machine (CPU model, cores, GPU); they are rewritten after each step. ``--redo STEP,...`` forces steps again.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

STEPS = ("dataset", "features", "precision", "captions", "study", "caption-study", "layer-picker", "report")
REDO = ("precision", "layer-picker", "report")  # steps that only read: safe to compute again
COMPUTE_COLUMNS = ["step", "status", "wall_s", "started", "detail", "device", "machine"]
REPORT_FILES = ("report.html", "verdicts.csv", "runs.csv", "weights.csv")
COSINE_BOUND = 0.99
CPU_CAPTION_RATE = 1.9  # SmolLM2 captions per second on the 2-core development CPU (README, Results)


class StepFailed(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------------- options

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--microlens", default=str(ROOT.parent / "shared" / "data" / "microlens"),
                    help="MicroLens folder (*pairs*.tsv, *titles*.csv), read in place (default ../shared/data/microlens)")
    ap.add_argument("--db", default=None, help="database file (default $DFF_DB, else data/full-study.duckdb)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto: CUDA when the driver lists a GPU)")
    ap.add_argument("--seeds", default="3", help="a count (3 -> seeds 1,2,3) or a comma list (default 3)")
    ap.add_argument("--out", default=None, help="report folder (default docs/results/<dataset>-smollm2)")
    ap.add_argument("--name", default=None, help="study name (default: the --out folder's name)")
    ap.add_argument("--dataset", default=None, help="dataset name (default ml50k; demo with --demo)")
    ap.add_argument("--demo", action="store_true", help="the built-in demo dataset instead of MicroLens")
    ap.add_argument("--demo-size", default=None, metavar="ITEMS,USERS",
                    help="with --demo: a smaller seeded demo (e.g. 24,80) built next to the database")
    ap.add_argument("--tiny", action="store_true",
                    help="a tiny random SmolLM2-shaped checkpoint instead of the real weights (plumbing only: the "
                         "features and captions are random; for tests)")
    ap.add_argument("--backbone", default="smollm2", help="hidden-state backbone spec (default smollm2)")
    ap.add_argument("--features", default="smollm2-titles", help="feature set name (default smollm2-titles)")
    ap.add_argument("--captions", default="smollm2-captions", help="caption feature set name")
    ap.add_argument("--text-encoder", default="minilm", help="caption embedder (default minilm)")
    ap.add_argument("--no-captions", action="store_true", help="leave the caption route out (finding 1 untested)")
    ap.add_argument("--caption-users", type=int, default=None,
                    help="caption route on a seeded sample of N users (default: all items on CUDA; on a CPU the "
                         "most users whose items fit --caption-minutes)")
    ap.add_argument("--caption-minutes", type=float, default=30.0, help="CPU caption budget (default 30)")
    ap.add_argument("--caption-rate", type=float, default=CPU_CAPTION_RATE,
                    help=f"captions per second on this CPU, to size the sample (default {CPU_CAPTION_RATE}, "
                         "measured on the 2-core development machine)")
    ap.add_argument("--sample-seed", type=int, default=0, help="seed of the caption subsample (default 0)")
    ap.add_argument("--precision-items", type=int, default=200,
                    help="titles in the float32 precision check (default 200; 0 skips it)")
    ap.add_argument("--layer-points", type=int, default=7, help="single-layer points of the study (default 7)")
    ap.add_argument("--range", default=None, dest="intermediate", help="DFF intermediate range A-B (default: the middle half)")
    ap.add_argument("--epochs", type=int, default=None, help="epoch cap (default the study's: 200; runs early-stop)")
    ap.add_argument("--patience", type=int, default=None, help="early-stopping patience (default the study's: 5)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per training run")
    ap.add_argument("--workers", type=int, default=1, help="training runs at a time (default 1)")
    ap.add_argument("--extract-args", default="", help="extra options for both extract commands (one string)")
    ap.add_argument("--redo", default="", help=f"comma list of steps to compute again even when done ({', '.join(REDO)})")
    ap.add_argument("--dry-run", action="store_true", help="print what each step would do; write nothing")
    args = ap.parse_args(argv)
    if args.demo_size and not args.demo:
        ap.error("--demo-size needs --demo")
    bad = [s for s in _list(args.redo) if s not in REDO]
    if bad:
        ap.error(f"--redo: {', '.join(bad)} cannot be redone here (one of {', '.join(REDO)}; the others store data: "
                 "delete it with delete-dataset / delete-features, or use another --db)")
    if args.dataset is None:
        args.dataset = ("demo" if not args.demo_size else "demo-{}x{}".format(*_size(args.demo_size))) if args.demo \
            else "ml50k"
    if args.db is None:
        args.db = os.environ.get("DFF_DB") or str(ROOT / "data" / "full-study.duckdb")
    if args.out is None:
        args.out = str(ROOT / "docs" / "results" / f"{args.dataset}-smollm2")
    if args.name is None:
        args.name = Path(args.out).name
    return args


def _list(text: str) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _size(text: str) -> tuple[int, int]:
    try:
        items, users = (int(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--demo-size {text!r}: give ITEMS,USERS, e.g. 24,80") from None
    return items, users


# --------------------------------------------------------------------------------------------------- machine

def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    from jobs.submit import device_choices  # torch only where the driver lists a GPU

    return "cuda" if any(c.startswith("cuda") for c in device_choices()) else "cpu"


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        mem = ""
    text = f"{cpu} ({os.cpu_count()} cores{mem})"
    if device.startswith("cuda"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            text = f"{out[index].strip()} GPU; {text}" if out else text
        except (OSError, subprocess.SubprocessError, IndexError, ValueError):
            text = f"a CUDA GPU; {text}"
    return text


# --------------------------------------------------------------------------------------------------- helpers

class Session:
    """One invocation: the options, the database, the record of every step's compute."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.db_path = Path(args.db).resolve()
        self.out = Path(args.out).resolve()
        self.device = resolve_device(args.device)
        self.cuda = self.device.startswith("cuda")
        self.machine = machine(self.device)
        self.redo = set(_list(args.redo))
        self.changed = False  # a step stored something this invocation: the read-only steps after it recompute
        self.step: str | None = None       # the step running now
        self.step_started = ""
        self.prior: dict[str, dict] = {}   # a step's record before this invocation marked it running
        self.caption_on_sample = not args.no_captions and (args.caption_users is not None or not self.cuda)
        self.sample = f"{args.dataset}-captions-sample"
        self.sample_study = f"{args.name}-captions-sample"
        self.record = self._read_record()
        self.backbone = args.backbone
        self._db = None

    # ------------------------------------------------------------------ storage (reads in this process)
    @property
    def db(self):
        if self._db is None:
            from storage import Database
            self._db = Database(self.db_path)
        return self._db

    def db_exists(self) -> bool:
        return self.db_path.exists()

    def dataset(self, name: str):
        from storage.datasets import get_dataset
        from storage.db import NotFound

        if not self.db_exists():
            return None
        try:
            return get_dataset(self.db, name)
        except NotFound:
            return None

    def feature_set(self, name: str, dataset: str):
        from storage.db import NotFound
        from storage.features import get_feature_set

        if not self.db_exists() or self.dataset(dataset) is None:
            return None
        try:
            return get_feature_set(self.db, name, dataset=dataset)
        except NotFound:
            return None

    # ------------------------------------------------------------------ the CLI (actions in their own process)
    def cli(self, *argv, db: Path | None = None, capture: bool = False) -> str:
        if self.step and self.step not in self.prior:  # the step starts work: mark it, so a crash leaves a trace
            self.prior[self.step] = self.record.get(self.step) or {}
            self.record[self.step] = {"step": self.step, "status": "running", "wall_s": "", "started": self.step_started,
                                      "detail": "cut off if this stays: rerun the same command to resume",
                                      "device": self.device, "machine": self.machine}
            self.write_compute()
        cmd = [sys.executable, "-m", "dff_core", "--db", str(db or self.db_path), *map(str, argv)]
        print("  $ python " + " ".join(shlex.quote(str(a)) for a in cmd[1:]), flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] if capture else []
            raise StepFailed(f"`{' '.join(map(str, argv[:2]))} ...` exited {proc.returncode}" +
                             (f": {tail[0]}" if tail else ""))
        return proc.stdout or ""

    # ------------------------------------------------------------------ the compute record
    def _read_record(self) -> dict[str, dict]:
        path = self.out / "compute.csv"
        if not path.is_file():
            return {}
        with path.open(newline="", encoding="utf-8") as f:
            return {row["step"]: row for row in csv.DictReader(f)}

    def note(self, step: str, status: str, wall_s: float | None, detail: str, started: str | None = None) -> None:
        """Record a step. A step found done keeps the record of the invocation that did it (``present`` when this
        script did not time it); a step resumed after a failure adds the failed attempt's time to its own."""
        old = self.prior.get(step, self.record.get(step)) or {}
        if status == "done (earlier)":
            if old.get("status") == "done":
                return
            status, wall_s = "present", None
        if old.get("status") == "failed" and old.get("wall_s") and wall_s is not None:
            wall_s += float(old["wall_s"])
            detail += " (resumed: the time includes the earlier attempts)"
            started = old.get("started") or started
        elif old.get("status") == "running" and status in ("done", "failed"):
            detail += f" (resumed: an attempt started {old.get('started')} was cut off; its time is not counted)"
        self.record[step] = {"step": step, "status": status, "wall_s": "" if wall_s is None else f"{wall_s:.1f}",
                             "started": started or "", "detail": detail, "device": self.device, "machine": self.machine}
        self.write_compute()

    def write_compute(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        rows = [self.record[s] for s in STEPS if s in self.record]
        with (self.out / "compute.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=COMPUTE_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        total = sum(float(r["wall_s"]) for r in rows if r.get("wall_s"))
        lines = [f"machine: {self.machine}", f"device: {self.device}", f"database: {self.db_path}",
                 f"dataset: {self.args.dataset}; study: {self.args.name}; seeds: {self.args.seeds}", ""]
        lines += [f"{r['step']:14} {r['status']:15} {_minutes(r['wall_s']):>10}  {r['detail']}" for r in rows]
        lines += ["", f"{'total':14} {'':15} {_minutes(total):>10}  (steps timed by this script)"]
        (self.out / "compute.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def again(self, step: str) -> bool:
        """Compute a read-only step again: asked for (``--redo``) or something before it changed."""
        return step in self.redo or self.changed

    def wall(self, step: str) -> str:
        return _minutes((self.record.get(step) or {}).get("wall_s"))


def _minutes(s) -> str:
    if s in (None, ""):
        return "—"
    s = float(s)
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------------------------------- steps
# Each step function returns (status, detail) or raises StepFailed; ``done`` says whether its output exists.

def step_dataset(s: Session, dry: bool):
    a = s.args
    ds = s.dataset(a.dataset)
    if ds is not None:
        return "done (earlier)", _dataset_detail(ds)
    if a.demo and a.demo_size:
        items, users = _size(a.demo_size)
        if dry:
            return "would run", f"build a seeded demo of {items} items and {users} users, import it as {a.dataset!r}"
        from dff_core.demo import build_demo

        folder = s.db_path.parent / a.dataset
        shutil.rmtree(folder, ignore_errors=True)
        build_demo(folder, n_items=items, n_users=users)
        s.cli("import-dataset", a.dataset, "--interactions", folder / "interactions.csv", "--items",
              folder / "items.csv", "--media", folder)
    elif a.demo:
        if dry:
            return "would run", "python -m dff_core demo"
        s.cli("demo")
    else:
        folder = Path(a.microlens)
        if not any(folder.glob("*pairs*.tsv")) or not any(folder.glob("*titles*.csv")):
            raise StepFailed(f"no MicroLens folder at {folder} (*pairs*.tsv and *titles*.csv); pass --microlens DIR")
        if dry:
            return "would run", f"import-dataset {a.dataset} --microlens {folder}"
        s.cli("import-dataset", a.dataset, "--microlens", folder)
    return "done", _dataset_detail(s.dataset(a.dataset))


def _dataset_detail(ds) -> str:
    st = ds.stats or {}
    return f"{ds.name}: {st.get('users')} users, {st.get('items')} items, {st.get('interactions')} interactions"


def _tiny_checkpoint(s: Session) -> str:
    """A tiny random Llama with SmolLM2's chat template and a byte-level tokenizer, loaded as ``smollm2:DIR``."""
    folder = s.db_path.parent / "tiny-smollm2"
    if not (folder / "config.json").is_file():
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from dff_core.backbones.tiny import byte_level_tokenizer

        template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
        tok = byte_level_tokenizer(["<|im_start|>", "<|im_end|>", "<|pad|>"], template, eos="<|im_end|>", pad="<|pad|>")
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=5,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
        model = LlamaForCausalLM(cfg)
        with torch.no_grad():  # never write a special or blank token: every caption is some non-blank text
            blank = [i for i in range(len(tok)) if not tok.decode([i], skip_special_tokens=True).strip()]
            model.lm_head.weight[blank] = 0.0
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return f"smollm2:{folder}"


def _extract_args(s: Session, dataset: str, name: str, caption: bool, *, backbone: str | None = None,
                  compute: str | None = None, dtype: str | None = None) -> list[str]:
    argv = ["extract", "--dataset", dataset, "--backbone", backbone or s.backbone, "--name", name,
            "--inputs", "title", "--device", s.device]
    if caption:
        argv += ["--caption", "--text-encoder", s.args.text_encoder]
    else:  # bfloat16 on CUDA; on a CPU auto = bfloat16 where native (cosine >= 0.9999 measured), else float32
        argv += ["--compute-dtype", compute or ("bfloat16" if s.cuda else "auto")]
    if dtype:
        argv += ["--dtype", dtype]
    return argv + shlex.split(s.args.extract_args)


def _features_detail(fs) -> str:
    st = fs.stats or {}
    p = fs.params or {}
    rate = st.get("items_per_second")
    return (f"{fs.name}: {st.get('items')} items x {fs.num_layers} layers x {fs.dim}, {fs.status}, "
            f"{p.get('device', '?')} {p.get('compute_dtype', '?')}" + (f", {float(rate):.1f} items/s" if rate else ""))


def _extract(s: Session, dry: bool, step: str, dataset: str, name: str, caption: bool):
    fs = s.feature_set(name, dataset)
    if fs is not None and fs.status in ("complete", "partial"):
        return "done (earlier)", _features_detail(fs)
    argv = _extract_args(s, dataset, name, caption)
    if dry:
        return "would run", " ".join(map(str, argv)) + (" (resumes the stored items)" if fs is not None else "")
    s.cli(*argv)
    fs = s.feature_set(name, dataset)
    if fs is None or fs.status not in ("complete", "partial"):
        raise StepFailed(f"feature set {name!r} is {fs.status if fs else 'missing'} after extract")
    return "done", _features_detail(fs)


def step_features(s: Session, dry: bool):
    return _extract(s, dry, "features", s.args.dataset, s.args.features, caption=False)


def step_precision(s: Session, dry: bool):
    """Every layer's mean cosine of the stored vectors to float32 ones computed on a seeded sample of titles."""
    a = s.args
    path = s.out / "precision.csv"
    if a.precision_items <= 0:
        return "skipped", "--precision-items 0"
    if path.is_file() and not s.again("precision"):
        return "done (earlier)", _precision_detail(path)
    fs = s.feature_set(a.features, a.dataset)
    if dry:
        return "would run", (f"extract --compute-dtype float32 over {a.precision_items} sampled titles in a scratch "
                             f"database; per-layer mean cosine to the stored vectors -> {path.name}")
    if fs is None:
        raise StepFailed("no feature set to check")
    if (fs.params or {}).get("compute_dtype") == "float32":
        _write_csv(path, [{"layer": l, "mean_cosine": 1.0} for l in range(fs.num_layers)])
        return "done", "computed in float32: the reference itself"
    import numpy as np
    import pandas as pd

    from bench_fastpath_extract import layer_cosines, write_dataset
    from storage.datasets import load_items
    from storage.features import read_features

    items = load_items(s.db, fs.dataset_id)
    feats, present = read_features(s.db, fs, dtype=np.float16)  # as stored; the sample is widened below
    titled = items["title"].fillna("").astype(str).str.strip().ne("").to_numpy()
    items = items[present[items["idx"].to_numpy()] & titled]
    rows = items.sample(n=min(a.precision_items, len(items)), random_state=0).sort_values("idx")
    work = s.db_path.parent / f"{s.db_path.stem}-precision"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sample = pd.DataFrame({"item_id": [f"i{int(i)}" for i in rows["idx"]], "title": rows["title"].astype(str)})
    inter, items_csv = write_dataset(work, sample)
    ref_db = work / "reference.duckdb"
    s.cli("import-dataset", "titles", "--interactions", inter, "--items", items_csv, "--min-interactions", 5, db=ref_db)
    s.cli(*_extract_args(s, "titles", "float32", False, compute="float32", dtype="float32"), db=ref_db)
    from storage import Database
    from storage.datasets import load_items as ref_items
    from storage.features import get_feature_set

    rdb = Database(ref_db)
    rfs = get_feature_set(rdb, "float32", dataset="titles")
    ref, ref_present = read_features(rdb, rfs, dtype=np.float32)
    ref_map = dict(zip(ref_items(rdb, rfs.dataset_id)["item_id"].astype(str), ref_items(rdb, rfs.dataset_id)["idx"]))
    pairs = [(int(i), int(ref_map[f"i{int(i)}"])) for i in rows["idx"] if f"i{int(i)}" in ref_map]
    pairs = [(i, j) for i, j in pairs if ref_present[j]]
    cos = layer_cosines(ref[[j for _, j in pairs]], feats[[i for i, _ in pairs]].astype(np.float32))
    _write_csv(path, [{"layer": l, "mean_cosine": f"{c:.6f}"} for l, c in enumerate(cos)])
    shutil.rmtree(work, ignore_errors=True)
    detail = _precision_detail(path)
    if float(np.min(cos)) < COSINE_BOUND:
        print(f"warning: {detail}", file=sys.stderr)
    return "done", detail


def _precision_detail(path: Path) -> str:
    with path.open(newline="", encoding="utf-8") as f:
        rows = [(int(r["layer"]), float(r["mean_cosine"])) for r in csv.DictReader(f)]
    layer, worst = min(rows, key=lambda r: r[1])
    return (f"min layer mean cosine to float32 {worst:.4f} (layer {layer}); bound >= {COSINE_BOUND}: "
            f"{'met' if worst >= COSINE_BOUND else 'MISSED'}")


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def sample_users(s: Session, target_items: int) -> tuple[int, int]:
    """The most users whose seeded sample touches at most ``target_items`` items: the draw of
    ``jobs.subsample.subsample_dataset`` (``default_rng(seed).choice(users, size, replace=False)``)."""
    import numpy as np

    from storage.datasets import load_interactions

    inter = load_interactions(s.db, s.dataset(s.args.dataset).id)
    users = np.unique(inter["user_idx"].to_numpy())
    by_user = inter.groupby("user_idx")["item_idx"].apply(lambda x: x.to_numpy())

    def items_for(n: int) -> int:
        chosen = np.random.default_rng(s.args.sample_seed).choice(users, size=n, replace=False)
        return len(np.unique(np.concatenate([by_user[u] for u in chosen])))

    lo, hi = 1, len(users) - 1
    if items_for(lo) > target_items:
        return lo, items_for(lo)
    while lo < hi:  # items grow with the sample size almost monotonically; a binary search is close enough
        mid = (lo + hi + 1) // 2
        if items_for(mid) <= target_items:
            lo = mid
        else:
            hi = mid - 1
    return lo, items_for(lo)


def step_captions(s: Session, dry: bool):
    a = s.args
    if a.no_captions:
        return "skipped", "--no-captions: finding 1 is not tested"
    if not s.caption_on_sample:
        status, detail = _extract(s, dry, "captions", a.dataset, a.captions, caption=True)
        return status, f"all items; {detail}"
    sample = s.dataset(s.sample)
    how = ""
    if sample is None:
        if a.caption_users is not None:
            users, how = a.caption_users, f"--caption-users {a.caption_users}"
        else:
            target = int(a.caption_minutes * 60 * a.caption_rate)
            if dry and s.dataset(a.dataset) is None:
                return "would run", (f"study-sample {a.dataset} {s.sample} --users N (the most users whose items' "
                                     f"captions fit {a.caption_minutes:g} min at {a.caption_rate:g}/s: <= {target} "
                                     f"items), then extract --caption on it")
            users, items = sample_users(s, target)
            how = (f"{users} users touch {items} items, the most whose captions fit {a.caption_minutes:g} min at "
                   f"{a.caption_rate:g} items/s")
        if dry:
            return "would run", f"study-sample {a.dataset} {s.sample} --users {users} ({how}), then extract --caption"
        s.cli("study-sample", a.dataset, s.sample, "--users", users, "--seed", a.sample_seed, "--features", a.features)
        sample = s.dataset(s.sample)
    status, detail = _extract(s, dry, "captions", s.sample, a.captions, caption=True)
    sub = (sample.params or {}).get("subsample") or {}
    return status, (f"seeded user subsample {s.sample!r} (seed {sub.get('seed', a.sample_seed)}, "
                    f"{(sample.stats or {}).get('users')} users, {(sample.stats or {}).get('items')} items"
                    + (f"; {how}" if how else "") + f"); {detail}")


def _study_state(s: Session, study: str) -> dict | None:
    """None when nothing is queued under ``study``; else counts of its train jobs by status and the sweep's."""
    from storage.queue import list_jobs

    if not s.db_exists():
        return None
    jobs = list_jobs(s.db, group=study)
    if not jobs:
        return None
    train = [j for j in jobs if j.kind == "train"]
    sweep = next((j for j in jobs if j.kind == "sweep"), None)
    state = {st: [j.id for j in train if j.status == st]
             for st in ("queued", "running", "done", "failed", "cancelled", "interrupted")}
    state["total"] = len(train)
    state["sweep"] = (sweep.id, sweep.status) if sweep else None
    return state


def _finished(state: dict | None) -> bool:
    return bool(state and state["sweep"] and state["sweep"][1] == "done" and state["total"]
                and len(state["done"]) == state["total"])


def _run_study(s: Session, dry: bool, step: str, study: str, dataset: str, captions: str | None):
    a = s.args
    state = _study_state(s, study)
    if _finished(state):
        return "done (earlier)", _study_detail(s, study)
    argv = ["study", "--dataset", dataset, "--features", a.features, "--seeds", a.seeds, "--device", s.device,
            "--name", study, "--layer-points", a.layer_points]
    argv += ["--captions", captions] if captions else []
    argv += ["--range", a.intermediate] if a.intermediate else []
    argv += ["--epochs", a.epochs] if a.epochs else []
    argv += ["--patience", a.patience] if a.patience else []
    argv += ["--threads", a.threads] if a.threads else []
    if dry:
        if state is None:
            fs = s.feature_set(a.features, dataset)
            if fs is not None:
                print(s.cli(*argv, "--dry-run", capture=True).rstrip())
            return "would run", " ".join(map(str, argv)) + f"; worker --once --concurrency {a.workers}"
        return "would run", (f"resume {len(state['interrupted'])} interrupted, retry {len(state['failed'])} failed, "
                             f"run {len(state['queued'])} queued of {state['total']} training jobs")
    if state is None:
        s.cli(*argv)
    else:  # a rerun: what a crash left interrupted is resumed from its checkpoint, what failed is tried again
        if state["sweep"] and state["sweep"][1] in ("interrupted", "failed"):
            s.cli("resume" if state["sweep"][1] == "interrupted" else "retry", state["sweep"][0])
        for job in state["interrupted"]:
            s.cli("resume", job)
        for job in state["failed"]:
            s.cli("retry", job)
    s.cli("worker", "--once", "--concurrency", a.workers)
    state = _study_state(s, study)
    if not _finished(state):
        left = {k: len(v) for k, v in state.items() if isinstance(v, list) and v and k != "done"} if state else {}
        raise StepFailed(f"study {study!r}: {len(state['done']) if state else 0}/{state['total'] if state else '?'} "
                         f"training jobs done ({left}); run the same command again to resume")
    return "done", _study_detail(s, study)


def _study_detail(s: Session, study: str) -> str:
    from jobs.study import load_study

    data = load_study(s.db, study)
    runs = data.runs
    endings = runs["ending"].value_counts().to_dict() if "ending" in runs else {}
    roles = runs["role"].nunique() if "role" in runs else "?"
    seeds = runs["seed"].nunique() if "seed" in runs else "?"
    epochs = (f", epochs {int(runs['epochs'].min())}-{int(runs['epochs'].max())}"
              if "epochs" in runs and len(runs) else "")
    devices = "/".join(sorted(set(runs["device"].astype(str)))) if "device" in runs and len(runs) else "?"
    return (f"{len(runs)} runs = {roles} roles x {seeds} seeds{epochs}, on {devices}; endings "
            + ", ".join(f"{k} {v}" for k, v in sorted(endings.items())) + f"; objective {_objective(runs)}")


def _objective(runs) -> str:
    losses = sorted(set(runs["loss"].astype(str))) if "loss" in runs and len(runs) else []
    if losses == ["full"]:
        return "full softmax over all items (the default objective)"
    return " / ".join(losses) or "?"


def step_study(s: Session, dry: bool):
    captions = s.args.captions if (not s.args.no_captions and not s.caption_on_sample) else None
    return _run_study(s, dry, "study", s.args.name, s.args.dataset, captions)


def step_caption_study(s: Session, dry: bool):
    if s.args.no_captions:
        return "skipped", "--no-captions"
    if not s.caption_on_sample:
        return "skipped", "the caption route runs inside the main study (all items)"
    status, detail = _run_study(s, dry, "caption-study", s.sample_study, s.sample, s.args.captions)
    return status, f"{s.sample_study} on {s.sample}: {detail}"


def step_layer_picker(s: Session, dry: bool):
    a = s.args
    csv_path, txt_path = s.out / "layer-picker.csv", s.out / "layer-picker.txt"
    if csv_path.is_file() and txt_path.is_file() and not s.again("layer-picker"):
        return "done (earlier)", txt_path.read_text(encoding="utf-8").strip()
    if dry:
        return "would run", ("jobs.probes.cached_layer_usefulness (the Train page's score) vs the study's gate@L test "
                             "NDCG@10: Spearman, picked vs best layer")
    frame, line = layer_picker(s)
    s.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False, float_format="%.6g")
    txt_path.write_text(line + "\n", encoding="utf-8")
    return "done", line


def layer_picker(s: Session, metric: str = "NDCG@10"):
    """Per layer: the usefulness score (lift) and, at the study's layer points, the measured gate@L metric."""
    import numpy as np
    from scipy.stats import spearmanr

    from dff_core.study.verdicts import layer_curve
    from jobs.probes import cached_layer_usefulness
    from jobs.study import load_study
    from storage.features import get_feature_set

    fs = get_feature_set(s.db, s.args.features, dataset=s.args.dataset)
    t0 = time.perf_counter()
    scores = cached_layer_usefulness(s.db, fs)
    score_s = time.perf_counter() - t0
    curve = layer_curve(load_study(s.db, s.args.name), metric)
    frame = scores[["layer", "score", "chance", "lift"]].merge(
        curve[["layer", "test mean", "test std", "val mean", "seeds"]] if len(curve) else
        curve.reindex(columns=["layer", "test mean", "test std", "val mean", "seeds"]), on="layer", how="left")
    frame = frame.rename(columns={"test mean": f"test {metric} mean", "test std": f"test {metric} std",
                                  "val mean": f"val {metric} mean"})
    frame.insert(1, "in_study", frame[f"test {metric} mean"].notna())
    measured = frame[frame["in_study"]]
    picked_all = int(frame.loc[frame["lift"].idxmax(), "layer"])
    if len(measured) < 2:
        return frame, f"layer picker: fewer than 2 measured layer points; the score picks layer {picked_all}"
    rho, p = spearmanr(measured["lift"], measured[f"test {metric} mean"])
    picked = measured.loc[measured["lift"].idxmax()]
    best = measured.loc[measured[f"test {metric} mean"].idxmax()]
    best_val = measured.loc[measured[f"val {metric} mean"].idxmax()]
    line = (f"layer picker: Spearman rho = {rho:.3f} (p = {p:.3g}) between the usefulness score (lift, "
            f"{scores.attrs.get('items')} sampled items, {score_s:.1f} s) and the measured single-layer test {metric} "
            f"over {len(measured)} layer points; among them the score picks layer {int(picked['layer'])} (test "
            f"{picked[f'test {metric} mean']:.4f}), the best measured is layer {int(best['layer'])} "
            f"({best[f'test {metric} mean']:.4f}; best on validation: layer {int(best_val['layer'])}); "
            f"over all {len(frame)} layers the score picks layer {picked_all}")
    if not np.isfinite(rho):
        line += " (rho undefined: a constant column)"
    return frame, line


def step_report(s: Session, dry: bool):
    targets = [(s.args.name, s.out)]
    if s.caption_on_sample:
        targets.append((s.sample_study, s.out / "captions-sample"))
    missing = [folder / f for _, folder in targets for f in REPORT_FILES if not (folder / f).is_file()]
    if not missing and not s.again("report"):
        return "done (earlier)", f"{len(targets) * len(REPORT_FILES)} files in {s.out.name}/"
    if dry:
        return "would run", "study --report ... --html report.html --csv verdicts.csv --runs-csv runs.csv; weights.csv"
    from dff_core.study.verdicts import weights_table
    from jobs.study import load_study

    lines = []
    for study, folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
        out = s.cli("study", "--report", study, "--html", folder / "report.html", "--csv", folder / "verdicts.csv",
                    "--runs-csv", folder / "runs.csv", "--note", report_note(s, study), capture=True)
        weights_table(load_study(s.db, study)).to_csv(folder / "weights.csv", index=False, float_format="%.6g")
        (folder / "verdicts.txt").write_text(out, encoding="utf-8")
        lines.append(f"{study}: " + ", ".join(" ".join(l.split()[:3]) for l in out.splitlines()
                                                if l.startswith("finding")))
        print(out.rstrip())
    return "done", "; ".join(lines)


def report_note(s: Session, study: str) -> str:
    """The compute line shown in the HTML report: machine, each step's wall time, objective, caption route."""
    rec = s.record
    parts = [f"Machine: {s.machine}; device {s.device}."]
    steps = ", ".join(f"{step} {s.wall(step)}" for step in STEPS if rec.get(step, {}).get("wall_s"))
    if steps:
        parts.append(f"Wall time per step (bench/full_study.py): {steps}.")
    for step in ("features", "precision", "captions", "study", "caption-study"):
        if rec.get(step, {}).get("detail"):
            parts.append(f"{step}: {rec[step]['detail']}.")
    if s.caption_on_sample:
        parts.append(f"Finding 1 (caption route) is judged on the seeded user subsample {s.sample!r} in the study "
                     f"{s.sample_study!r} (report in captions-sample/), not on the whole dataset"
                     + (": on this CPU the captions of every item would not fit the time budget." if not s.cuda else "."))
    picker = s.out / "layer-picker.txt"
    if study == s.args.name and picker.is_file():
        parts.append(picker.read_text(encoding="utf-8").strip().replace("layer picker: ", "Layer picker: ") + ".")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------- main

RUNNERS = {"dataset": step_dataset, "features": step_features, "precision": step_precision,
           "captions": step_captions, "study": step_study, "caption-study": step_caption_study,
           "layer-picker": step_layer_picker, "report": step_report}


def _terminated(signum, frame):
    # SIGTERM (``timeout``, a scheduler) unwinds like Ctrl-C: subprocess.run kills the running command (a worker
    # takes its training runners with it, their jobs become interrupted) and the next invocation resumes them
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if __name__ == "__main__":
        signal.signal(signal.SIGTERM, _terminated)
    s = Session(args)
    if args.tiny and not args.dry_run:
        s.backbone = _tiny_checkpoint(s)
    print(f"full study {args.name!r}: dataset {args.dataset}, device {s.device} ({s.machine}), seeds {args.seeds}, "
          f"database {s.db_path}, report folder {s.out}" + (" [dry run]" if args.dry_run else ""), flush=True)
    start = time.perf_counter()
    for i, step in enumerate(STEPS, 1):
        t0, started = time.perf_counter(), _now()
        s.step, s.step_started = (None if args.dry_run else step), started
        try:
            status, detail = RUNNERS[step](s, args.dry_run)
        except StepFailed as e:
            wall = time.perf_counter() - t0
            if not args.dry_run:
                s.note(step, "failed", wall, str(e), started)
            print(f"[{i}/{len(STEPS)}] {step:14} failed after {_minutes(wall)}: {e}", flush=True)
            return 1
        wall = time.perf_counter() - t0
        if not args.dry_run:
            s.note(step, status, wall if status == "done" else None, detail, started)
            s.changed |= status == "done"
        shown = s.wall(step) if status == "done (earlier)" else _minutes(wall)
        print(f"[{i}/{len(STEPS)}] {step:14} {status:15} {shown:>10}  {detail}", flush=True)
    if not args.dry_run:
        print(f"full study {args.name!r}: {_minutes(time.perf_counter() - start)} this invocation; compute record in "
              f"{s.out / 'compute.csv'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
