"""DFF Studio's science: parsing and splits, the demo data, video, backbones, extraction, models, training,
evaluation, neighbours, probes and the study's verdict maths.

It imports no storage, no jobs and no front end (``tests/test_house.py``): ``jobs`` reads and writes storage
around it, and the dashboard and the CLI reach it through ``jobs``.
"""
__version__ = "0.1.0"
