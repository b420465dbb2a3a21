"""The GPU benchmark reads MicroLens straight from its folder (no database): its split must be the product's."""
import sys
from pathlib import Path

import numpy as np

from jobs.datasets import import_microlens
from jobs.reads import load_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_bench_gpu_split_equals_the_stored_split(db, tmp_path):
    import bench_gpu

    d = tmp_path / "ml"
    d.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for u in range(25):  # a few users under 5 interactions: the importer drops them, so must the benchmark
        items = rng.choice(np.arange(1, 31), size=int(rng.integers(3, 9)), replace=False)
        lines.append(f"u{u}\t" + " ".join(str(i) for i in items))
    (d / "x_pairs.tsv").write_text("\n".join(lines) + "\n")
    (d / "x_titles.csv").write_text("item,title\n" + "".join(f"{i},title {i}\n" for i in range(1, 31)))

    ours, titles = bench_gpu.load_split(str(d), None)
    stored = load_split(db, import_microlens(db, "ml", d).id)
    assert ours.num_items == stored.num_items == len(titles)
    assert ours.user_ids == stored.user_ids and 0 < ours.num_users < 25
    assert all(np.array_equal(a, b) for a, b in zip(ours.train, stored.train))
    assert np.array_equal(ours.val_target, stored.val_target) and np.array_equal(ours.test_target, stored.test_target)
