"""Study mode: do the paper's three findings hold on this dataset and backbone?

``plan`` decides which runs one study queues (one sweep job), ``verdicts`` reads the finished runs back and
judges each finding with a paired test over seeds, ``report`` renders HTML (self-contained) and CSV, and
``subsample`` makes a seeded user sample of a large dataset so a study fits a small machine.
"""
from dff_core.study.plan import StudyRequest, plan_runs, queue_study, sweep_params
from dff_core.study.verdicts import StudyData, evaluate, load_study

__all__ = ["StudyRequest", "StudyData", "plan_runs", "queue_study", "sweep_params", "evaluate", "load_study"]
