"""Shared fixtures: a fresh database file per test, the optional real MicroLens bundle, tiny datasets."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from data_helpers import MICROLENS  # noqa: E402  (tests/ is on sys.path: pytest puts a conftest's folder there)


@pytest.fixture
def db(tmp_path):
    from storage import Database
    return Database(tmp_path / "test.duckdb")


@pytest.fixture
def microlens_dir() -> Path:
    if not (MICROLENS / "MicroLens-50k_pairs.tsv").exists():
        pytest.skip("the MicroLens-50k bundle is not present at ../shared/data/microlens")
    return MICROLENS


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance on 2 CPUs for one test module (ray.init with no dashboard); shut down after the
    module if this fixture started it. Skips where the optional Ray engine is not installed."""
    ray = pytest.importorskip("ray", reason="the Ray engine is optional: pip install -r requirements-ray.txt")
    from dff_core.extraction import ray_engine

    started = ray_engine.connect(num_cpus=2)
    yield
    if started:
        ray.shutdown()
