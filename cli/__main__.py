import os

# before torch loads: OpenMP threads that spin while waiting make training many times slower on a shared,
# busy CPU (MicroLens top-3k, ID SASRec, on a loaded 2-core machine: 390 s per epoch with 2 spinning threads,
# 54-71 s with 1 thread waiting passively); passive waiting costs nothing on an idle machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cli import main  # noqa: E402

raise SystemExit(main())
