"""A separate OS process hammering the shared database (used by test_storage_concurrency and the bench).

usage: python concurrency_worker.py DB ROLE TAG N
  ROLE writer: N short transactions, each adding one metrics row and, every 10th, a feature batch
  ROLE reader: reads counts N times and checks they never go backwards
Prints one JSON line: counts, longest wait for the lock, errors.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from storage import Database  # noqa: E402
from storage.features import get_feature_set, write_vectors  # noqa: E402
from storage.runs import log_metrics  # noqa: E402


def main(db_path: str, role: str, tag: str, n: int) -> None:
    db = Database(db_path)
    waits, errors, last = [], [], -1
    fs = get_feature_set(db, "shared") if role == "writer" else None
    for i in range(n):
        start = time.perf_counter()
        try:
            if role == "writer":
                log_metrics(db, int(tag), i, "val", {"NDCG@10": i / n})
                if i % 10 == 0:
                    item = int(tag) * 1000 + i // 10
                    write_vectors(db, fs, [item % 40], np.full((1, 3, 16), float(i)))
            else:
                with db.session() as conn:
                    count = db.raw(conn).execute("SELECT count(*) FROM metrics").fetchall()[0][0]
                if count < last:
                    errors.append(f"count went backwards: {last} -> {count}")
                last = count
        except Exception as exc:  # the test asserts there are none
            errors.append(f"{type(exc).__name__}: {exc}")
        waits.append(time.perf_counter() - start)
    print(json.dumps({"role": role, "tag": tag, "n": n, "max_wait": max(waits), "mean_wait": sum(waits) / len(waits),
                      "errors": errors, "last_count": last}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
