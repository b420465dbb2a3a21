"""The built-in DEMO dataset: seeded synthetic micro-videos, titles and user sequences.

``build_demo(out_dir)`` writes a small MicroLens-like dataset that needs no download::

    out_dir/
      videos/<item_id>.mp4     2-4 s clips, 224x224, 8 fps (h264 when PyAV has libx264, else mpeg4)
      covers/<item_id>.jpg     the middle frame of the clip
      items.csv                item_id,title,video_path,cover_path,topic   (paths relative to out_dir)
      interactions.csv         user_id,item_id,timestamp                  (time-ordered per user)
      README.txt

Everything derives from ``seed``: the same seed gives byte-identical CSVs and identical clips.

The data are built so that content carries signal that item ids alone cannot learn:

* Items belong to latent topics (``TOPICS``). A topic has its own palette, background texture,
  shape family and motion pattern, and its own title vocabulary; each item varies them (one of three
  visual variants per topic, plus per-item jitter of colours, sizes, speeds, counts and phases).
  About 7% of titles are generic ("wait for it # fyp") so the text alone is not a perfect label.
* Users have 1-3 preferred topics and 5-30 interactions. Each next item's topic mostly stays with the
  current one (then favouring the current visual variant), otherwise returns to a preferred topic or,
  rarely, explores any topic. Consecutive items share a topic about 65% of the time (chance: ~10%).
* Popularity within a topic is Zipf-like: a few hits and many items seen only a handful of times, so
  rare items have little collaborative signal but the same content as their topic's hits.

Media fallbacks are exercised on purpose: a few items have a cover but no video (``video_path`` is
empty) and two items have neither; ``DemoFiles.cover_only`` and ``DemoFiles.no_media`` list them, and
README.txt names them.

No storage, no Streamlit: this package only writes files (``jobs.datasets.ensure_demo`` imports
them). ``python -m dff_core.demo OUT_DIR [--seed N]`` builds one from the command line.

``topics`` holds the topic tables and draws the item catalogue, ``simulation`` the users' sequences,
``rendering`` the clips and covers; ``build`` writes them all, with the dataset's README.
"""
from dff_core.demo.build import DemoFiles, build_demo
from dff_core.demo.rendering import render_item, video_codec
from dff_core.demo.simulation import BASE_TIME, MAX_LEN, MIN_LEN, simulate_interactions
from dff_core.demo.topics import (FPS, MAX_FRAMES, MIN_FRAMES, N_VARIANTS, SIZE, TOPIC_NAMES, TOPICS, Catalog, Topic,
                                  make_catalog)

__all__ = ["BASE_TIME", "FPS", "MAX_FRAMES", "MAX_LEN", "MIN_FRAMES", "MIN_LEN", "N_VARIANTS", "SIZE", "TOPICS",
           "TOPIC_NAMES", "Catalog", "DemoFiles", "Topic", "build_demo", "make_catalog", "render_item",
           "simulate_interactions", "video_codec"]
