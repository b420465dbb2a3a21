"""Study mode: do the paper's three findings hold on this dataset and backbone?

``plan`` decides which runs one study queues (one sweep job), ``verdicts`` judges each finding from the
finished runs with a paired test over seeds, ``report`` renders HTML (self-contained) and CSV. Queueing a study
and reading its runs back from storage is ``jobs.study``; a seeded user sample of a large dataset, so a study
fits a small machine, is ``jobs.subsample``.
"""
from dff_core.study.plan import StudyRequest, plan_runs, sweep_params
from dff_core.study.verdicts import StudyData, evaluate

__all__ = ["StudyRequest", "StudyData", "plan_runs", "sweep_params", "evaluate"]
