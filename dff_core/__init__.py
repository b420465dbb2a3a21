"""DFF Studio core: data, video, backbones, extraction, models, training, evaluation, neighbours.

Nothing in this package imports Streamlit: the dashboard, the CLI and background jobs all call it.
"""
__version__ = "0.1.0"
