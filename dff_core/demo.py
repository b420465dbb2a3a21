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

No storage, no Streamlit: this module only writes files (``jobs.datasets.ensure_demo`` imports
them). ``python -m dff_core.demo OUT_DIR [--seed N]`` builds one from the command line.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

Progress = Callable[[str, int, int], None]

SIZE = 224                 # clip width and height, pixels
FPS = 8                    # frames per second
MIN_FRAMES, MAX_FRAMES = 2 * FPS, 4 * FPS   # 2-4 s per clip
N_VARIANTS = 3             # visual variants per topic
BASE_TIME = 1_700_000_000  # Unix seconds of the earliest possible interaction

# Interaction process
P_STAY = 0.75              # next item keeps the current topic (favouring items of the current variant)
VARIANT_BOOST = 3.0        # ... by this popularity factor
P_EXPLORE = 0.06           # next item's topic is uniform over all topics (else: a preferred topic)
ZIPF_EXPONENT = 2.5        # popularity of the rank-r item in its topic is proportional to r ** -ZIPF_EXPONENT
P_DIG = 0.5                # when popularity draws only gave seen items: chance to pick among the topic's unseen
                           # items (else the user moves to another topic); this sets how long the tail is
MIN_LEN, MAX_LEN = 5, 30   # interactions per user
MEAN_EXTRA_LEN = 5.5       # length = MIN_LEN + a truncated geometric number with this mean

# ------------------------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class Topic:
    name: str
    texture: str                        # background texture kind (see _texture)
    shape: str                          # shape family (see _shape_mask)
    motion: str                         # motion pattern (see _positions)
    background: tuple                   # two RGB colours the texture blends
    colors: tuple                       # RGB colours of the shapes
    n_shapes: tuple                     # (min, max) shapes per clip
    radius: tuple                       # (min, max) shape radius, pixels
    speed: float                        # typical shape speed, pixels per second (or radians/s for orbits)
    pan: tuple                          # background pan velocity (x, y), pixels per second
    shade: float                        # radial shading of the shapes (0 = flat)
    nouns: tuple
    adjectives: tuple
    subjects: tuple
    verbs: tuple
    tags: tuple


TOPICS: tuple[Topic, ...] = (
    Topic("cooking", "wood", "circle", "orbit",
          ((150, 95, 50), (105, 60, 30)), ((245, 200, 60), (230, 90, 40), (250, 240, 220), (200, 40, 30), (120, 170, 50)),
          (3, 6), (14, 30), 1.6, (6, 3), 0.35,
          ("pasta", "recipe", "kitchen", "noodles", "soup", "dumplings", "cake", "pizza", "sauce", "chicken", "rice",
           "bread"),
          ("spicy", "homemade", "delicious", "crispy", "easy", "cheesy", "sweet"),
          ("chef", "grandma", "my mom", "the cook"),
          ("cooks", "bakes", "tastes", "fries", "mixes"),
          ("cooking", "food", "recipe", "foodie")),
    Topic("cats", "fur", "triangle", "jump",
          ((200, 190, 175), (120, 112, 105)), ((90, 90, 95), (240, 170, 190), (235, 225, 205), (210, 140, 60)),
          (2, 4), (18, 34), 70.0, (0, 0), 0.0,
          ("kitten", "cat", "paws", "whiskers", "kitty", "tabby", "yarn", "catnip", "tail", "meow", "cat toy",
           "litter box"),
          ("fluffy", "sleepy", "grumpy", "tiny", "cute", "curious"),
          ("my kitten", "the cat", "this kitty", "our tabby"),
          ("purrs", "pounces", "naps", "meows", "plays"),
          ("cats", "kitten", "pets", "cute")),
    Topic("football", "field", "circle", "bounce",
          ((40, 140, 50), (30, 110, 40)), ((250, 250, 250), (20, 20, 20), (240, 230, 60)),
          (1, 3), (9, 16), 140.0, (0, 0), 0.45,
          ("goal", "match", "striker", "penalty", "stadium", "dribble", "keeper", "league", "pass", "free kick",
           "derby", "fans"),
          ("incredible", "last-minute", "stunning", "skillful", "crazy"),
          ("the striker", "the keeper", "our team", "the captain"),
          ("scores", "saves", "dribbles", "shoots", "wins"),
          ("football", "soccer", "goals", "sports")),
    Topic("travel", "sky", "diamond", "wave",
          ((120, 190, 240), (240, 215, 160)), ((250, 250, 250), (30, 90, 170), (250, 140, 60), (40, 180, 180)),
          (2, 5), (12, 24), 45.0, (10, 0), 0.0,
          ("beach", "island", "ocean", "sunset", "waves", "hotel", "flight", "coast", "vacation", "road trip",
           "harbor", "lagoon"),
          ("tropical", "sunny", "hidden", "dreamy", "breathtaking"),
          ("the tourist", "my friend", "the traveler", "she"),
          ("explores", "swims", "surfs", "travels", "visits"),
          ("travel", "beach", "vacation", "wanderlust")),
    Topic("dance", "rings", "star", "pulse",
          ((60, 20, 90), (150, 40, 160)), ((255, 60, 200), (60, 240, 255), (255, 240, 80), (250, 250, 250)),
          (2, 5), (16, 32), 1.0, (0, 0), 0.0,
          ("dance", "song", "beat", "choreography", "concert", "stage", "dancer", "guitar", "remix", "party", "dj",
           "chorus"),
          ("catchy", "energetic", "groovy", "live", "viral"),
          ("the dancer", "the band", "my sister", "the singer"),
          ("dances", "sings", "performs", "grooves", "plays"),
          ("dance", "music", "song", "party")),
    Topic("gaming", "checker", "square", "zigzag",
          ((25, 25, 40), (50, 50, 80)), ((255, 40, 40), (40, 220, 60), (60, 120, 255), (255, 220, 0)),
          (3, 6), (10, 20), 90.0, (0, 8), 0.0,
          ("game", "level", "boss", "gamer", "console", "speedrun", "controller", "pixel art", "quest", "arcade",
           "high score", "multiplayer"),
          ("epic", "retro", "insane", "hardcore", "funny"),
          ("the gamer", "my brother", "this player", "the streamer"),
          ("beats", "plays", "streams", "unlocks", "wins"),
          ("gaming", "gamer", "videogames", "esports")),
    Topic("fitness", "diagonal", "bar", "lift",
          ((35, 35, 35), (70, 20, 20)), ((230, 40, 40), (240, 240, 240), (160, 160, 170)),
          (1, 3), (26, 44), 2.2, (0, 0), 0.0,
          ("workout", "gym", "squat", "push-ups", "muscles", "training", "cardio", "barbell", "abs", "deadlift",
           "routine", "protein"),
          ("intense", "daily", "strong", "quick", "full-body"),
          ("the coach", "my trainer", "this athlete", "she"),
          ("lifts", "trains", "sweats", "runs", "stretches"),
          ("fitness", "gym", "workout", "health")),
    Topic("cars", "road", "car", "dash",
          ((70, 70, 75), (95, 95, 100)), ((220, 30, 30), (30, 80, 200), (240, 200, 20), (230, 230, 230)),
          (1, 3), (22, 34), 120.0, (-60, 0), 0.25,
          ("car", "engine", "race", "drift", "speed", "garage", "supercar", "tires", "highway", "driver", "motor",
           "race track"),
          ("fast", "classic", "loud", "shiny", "turbo"),
          ("the driver", "my dad", "this racer", "the mechanic"),
          ("drives", "races", "drifts", "revs", "overtakes"),
          ("cars", "racing", "supercar", "auto")),
    Topic("beauty", "radial", "ring", "drift",
          ((250, 215, 220), (225, 170, 190)), ((200, 60, 110), (250, 250, 255), (170, 120, 200), (240, 150, 130)),
          (2, 4), (16, 30), 1.2, (0, 0), 0.0,
          ("makeup", "lipstick", "skincare", "eyeliner", "hair", "nails", "blush", "foundation", "glow", "tutorial",
           "perfume", "lashes"),
          ("glamorous", "natural", "pretty", "soft", "glowing"),
          ("she", "my sister", "the artist", "this girl"),
          ("applies", "glows", "tries", "transforms", "styles"),
          ("makeup", "beauty", "skincare", "glam")),
    Topic("nature", "leaves", "leaf", "fall",
          ((60, 110, 50), (110, 85, 50)), ((230, 120, 30), (200, 60, 30), (240, 200, 60), (140, 190, 60)),
          (4, 8), (9, 16), 40.0, (0, 0), 0.2,
          ("forest", "leaves", "trees", "river", "mountain", "autumn", "hiking", "flowers", "birds", "garden",
           "rain", "moss"),
          ("peaceful", "green", "wild", "misty", "calm"),
          ("the hiker", "my dog", "the gardener", "she"),
          ("hikes", "grows", "falls", "blooms", "flows"),
          ("nature", "forest", "hiking", "outdoors")),
)

TOPIC_NAMES: tuple[str, ...] = tuple(t.name for t in TOPICS)

_GENERIC_TITLES = ("you won't believe this", "wait for it", "this made my day", "watch till the end",
                   "so satisfying", "part 2", "did not expect that", "my favorite moment", "new video",
                   "just for fun")
_GENERIC_TAGS = ("funny", "fyp", "viral", "daily", "trending", "foryou")
_TEMPLATES = (
    "{Adj} {noun} {ending}",
    "watch {subj} {verb}",
    "when {subj} {verb} {again}",
    "the most {adj} {noun} ever",
    "{Noun} and {noun2}",
    "day {n} of {adj} {noun}",
    "POV: {subj} {verb} {again}",
    "my {adj} {noun}",
    "top {n} {noun} moments",
    "{Subj} {verb}. {Adj} {noun}!",
    "{adj} {noun} with {noun2}",
    "how {subj} {verb}",
)
_ENDINGS = ("you have to see", "compilation", "of the day", "at home", "in 60 seconds", "for beginners",
            "that went wrong", "part 3")
_AGAIN = ("again", "every day", "like a pro", "for the first time", "", "")


# --------------------------------------------------------------------------------------------- API


@dataclass(frozen=True)
class DemoFiles:
    """What ``build_demo`` wrote (paths are absolute) and how much of it."""

    root: Path
    items_csv: Path
    interactions_csv: Path
    readme: Path
    videos_dir: Path
    covers_dir: Path
    n_items: int
    n_users: int
    n_interactions: int
    n_videos: int
    n_covers: int
    topics: tuple[str, ...]
    codec: str                       # "libx264" or "mpeg4"
    cover_only: tuple[str, ...]      # item ids with a cover but no video
    no_media: tuple[str, ...]        # item ids with neither video nor cover
    seconds: float                   # build time


@dataclass(frozen=True)
class Catalog:
    """The item side of the demo, before any file is written (item ``i`` has id ``str(i + 1)``)."""

    item_ids: tuple[str, ...]
    topic: np.ndarray          # (n_items,) index into TOPICS
    variant: np.ndarray        # (n_items,) 0..N_VARIANTS-1
    popularity: np.ndarray     # (n_items,) Zipf weight within the item's topic (the topic's hit has 1.0)
    titles: tuple[str, ...]
    n_frames: np.ndarray       # (n_items,) clip length in frames
    has_video: np.ndarray      # (n_items,) bool
    has_cover: np.ndarray      # (n_items,) bool


def video_codec() -> str:
    """h264 through libx264 when this PyAV build has it, else mpeg4."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def build_demo(out_dir: Path, *, seed: int = 0, n_items: int = 300, n_users: int = 2000,
               progress: Progress | None = None) -> DemoFiles:
    """Write the seeded demo dataset into ``out_dir`` (created if needed; the demo's own files are
    overwritten, nothing is deleted — build into a fresh folder to avoid stale clips of an earlier build).
    Needs ``n_items >= 20`` and ``n_users >= 1``; raises ``ValueError`` otherwise, before writing anything.

    ``progress(stage, done, total)`` is called for stages ``"catalog"``, ``"clips"`` (once per item)
    and ``"interactions"`` (in steps of users), each from ``(stage, 0, total)`` to ``(stage, total, total)``.
    """
    start = time.perf_counter()
    if n_users < 1:
        raise ValueError("n_users must be at least 1")
    report = progress or (lambda stage, done, total: None)
    report("catalog", 0, 1)
    catalog = make_catalog(n_items, seed=seed)   # validates n_items before anything is written
    report("catalog", 1, 1)

    out = Path(out_dir)
    videos, covers = out / "videos", out / "covers"
    videos.mkdir(parents=True, exist_ok=True)
    covers.mkdir(parents=True, exist_ok=True)

    codec = video_codec()
    total = len(catalog.item_ids)
    report("clips", 0, total)
    for i, item_id in enumerate(catalog.item_ids):
        if catalog.has_video[i] or catalog.has_cover[i]:
            render_item(catalog, i, seed=seed,
                        video=videos / f"{item_id}.mp4" if catalog.has_video[i] else None,
                        cover=covers / f"{item_id}.jpg" if catalog.has_cover[i] else None, codec=codec)
        report("clips", i + 1, total)

    interactions = simulate_interactions(catalog, n_users, seed=seed,
                                         progress=lambda d, t: report("interactions", d, t))

    items_csv = out / "items.csv"
    with open(items_csv, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["item_id", "title", "video_path", "cover_path", "topic"])
        for i, item_id in enumerate(catalog.item_ids):
            w.writerow([item_id, catalog.titles[i],
                        f"videos/{item_id}.mp4" if catalog.has_video[i] else "",
                        f"covers/{item_id}.jpg" if catalog.has_cover[i] else "",
                        TOPICS[catalog.topic[i]].name])
    inter_csv = out / "interactions.csv"
    with open(inter_csv, "w", newline="", encoding="utf-8") as fh:
        fh.write("user_id,item_id,timestamp\n")
        fh.writelines(f"{u},{catalog.item_ids[i]},{ts}\n" for u, i, ts in interactions)

    cover_only = tuple(catalog.item_ids[i] for i in np.flatnonzero(~catalog.has_video & catalog.has_cover))
    no_media = tuple(catalog.item_ids[i] for i in np.flatnonzero(~catalog.has_video & ~catalog.has_cover))
    readme = out / "README.txt"
    readme.write_text(_readme(seed, catalog, n_users, len(interactions), codec, cover_only, no_media),
                      encoding="utf-8")
    return DemoFiles(root=out.resolve(), items_csv=items_csv.resolve(), interactions_csv=inter_csv.resolve(),
                     readme=readme.resolve(), videos_dir=videos.resolve(), covers_dir=covers.resolve(),
                     n_items=total, n_users=n_users, n_interactions=len(interactions),
                     n_videos=int(catalog.has_video.sum()), n_covers=int(catalog.has_cover.sum()),
                     topics=TOPIC_NAMES, codec=codec, cover_only=cover_only, no_media=no_media,
                     seconds=time.perf_counter() - start)


# ------------------------------------------------------------------------------------------ catalog


def make_catalog(n_items: int = 300, *, seed: int = 0) -> Catalog:
    """Topics, variants, popularity, titles, clip lengths and media flags of ``n_items`` items."""
    if n_items < 2 * len(TOPICS):
        raise ValueError(f"n_items must be at least {2 * len(TOPICS)} (two per topic)")
    rng = np.random.default_rng([seed, 1])
    n_topics = len(TOPICS)
    topic = rng.permutation(np.arange(n_items) % n_topics)
    variant = rng.integers(0, N_VARIANTS, n_items)
    popularity = np.empty(n_items)
    for t in range(n_topics):
        members = np.flatnonzero(topic == t)
        ranks = rng.permutation(len(members)) + 1
        popularity[members] = ranks.astype(float) ** -ZIPF_EXPONENT
    n_frames = rng.integers(MIN_FRAMES, MAX_FRAMES + 1, n_items)
    titles = tuple(_title(rng, TOPICS[topic[i]], variant[i]) for i in range(n_items))
    # media fallbacks: a few cover-only items, two with nothing
    n_cover_only = max(2, round(0.02 * n_items))
    chosen = rng.choice(n_items, n_cover_only + 2, replace=False)
    has_video = np.ones(n_items, bool)
    has_cover = np.ones(n_items, bool)
    has_video[chosen] = False
    has_cover[chosen[n_cover_only:]] = False
    return Catalog(item_ids=tuple(str(i + 1) for i in range(n_items)), topic=topic, variant=variant,
                   popularity=popularity, titles=titles, n_frames=n_frames, has_video=has_video,
                   has_cover=has_cover)


def _title(rng: np.random.Generator, topic: Topic, variant: int) -> str:
    def pick(words: Sequence[str]) -> str:
        return words[int(rng.integers(len(words)))]

    if rng.random() < 0.07:   # generic: no topic word at all
        text = pick(_GENERIC_TITLES)
        tags = [pick(_GENERIC_TAGS)] if rng.random() < 0.6 else []
    else:
        # the item's variant prefers its third of the nouns, so titles vary with the visuals too
        third = len(topic.nouns) // N_VARIANTS
        own = topic.nouns[variant * third:(variant + 1) * third]
        noun = pick(own) if rng.random() < 0.6 else pick(topic.nouns)
        noun2 = pick([n for n in topic.nouns if n != noun])
        adj, subj, verb = pick(topic.adjectives), pick(topic.subjects), pick(topic.verbs)
        template = pick(_TEMPLATES)
        text = template.format(adj=adj, Adj=adj.capitalize(), noun=noun, Noun=noun.capitalize(), noun2=noun2,
                               subj=subj, Subj=subj.capitalize(), verb=verb, n=int(rng.integers(2, 11)),
                               ending=pick(_ENDINGS), again=pick(_AGAIN)).strip()
        tags = []
        if rng.random() < 0.45:
            k = int(rng.integers(1, 3))
            tags = [str(t) for t in rng.choice(topic.tags, k, replace=False)]
            if rng.random() < 0.5:
                tags.insert(0, pick(_GENERIC_TAGS))
    return text + "".join(f" # {t}" for t in tags)


# ------------------------------------------------------------------------------------- interactions


def simulate_interactions(catalog: Catalog, n_users: int = 2000, *, seed: int = 0,
                          progress: Callable[[int, int], None] | None = None) -> list[tuple[str, int, int]]:
    """``(user_id, item_index, timestamp)`` rows, grouped by user and time-ordered within each user.

    Each user has 1-3 preferred topics and 5-30 distinct items. The next item's topic is the current
    one with probability ``P_STAY`` (items of the current visual variant weighted up), any topic with
    probability ``P_EXPLORE``, else a preferred topic. Items are drawn by Zipf popularity with rejection
    of already-seen ones: after three seen draws the user digs into the topic's unseen items (``P_DIG``)
    or moves on to another topic. Finally every item nobody picked is appended to the history of a
    user whose last item shares its topic, so each item has at least one interaction (when
    ``n_users`` allows it) and the media-fallback items always reach the dataset.
    """
    if n_users < 1:
        raise ValueError("n_users must be at least 1")
    rng = np.random.default_rng([seed, 2])
    n_topics = len(TOPICS)
    weights = []
    for t in range(n_topics):
        m = np.flatnonzero(catalog.topic == t)
        weights.append((m, catalog.popularity[m], catalog.variant[m]))
    n_all = len(catalog.item_ids)
    # topics differ in overall appeal too, mildly
    topic_appeal = rng.uniform(0.6, 1.4, n_topics)
    max_len = min(MAX_LEN, len(catalog.item_ids))
    histories: list[list[tuple[int, int]]] = []   # per user: (item, timestamp)
    next_ts: list[int] = []
    step = max(1, n_users // 50)
    if progress:
        progress(0, n_users)
    p_geom = 1.0 / (1.0 + MEAN_EXTRA_LEN)
    for u in range(n_users):
        n_pref = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        prefs = rng.choice(n_topics, n_pref, replace=False, p=topic_appeal / topic_appeal.sum())
        pref_w = rng.dirichlet(np.full(n_pref, 2.0))
        length = MIN_LEN + min(int(rng.geometric(p_geom)) - 1, max_len - MIN_LEN)
        seen: set[int] = set()
        history: list[tuple[int, int]] = []
        current_topic = int(prefs[rng.choice(n_pref, p=pref_w)])
        current_variant = -1
        ts = BASE_TIME + int(rng.integers(0, 30 * 86400))
        for k in range(length):
            if k > 0:
                r = rng.random()
                if r < P_EXPLORE:
                    current_topic = int(rng.integers(n_topics))
                    current_variant = -1
                elif r >= P_EXPLORE + P_STAY:
                    current_topic = int(prefs[rng.choice(n_pref, p=pref_w)])
                    current_variant = -1
            item = _draw(rng, weights, current_topic, current_variant, seen)
            if item < 0 and rng.random() < P_DIG:   # dig into the topic's unseen tail
                item = _draw(rng, weights, current_topic, current_variant, seen, fresh=True)
            tries = 0
            while item < 0 and tries < 8:   # that topic gave only seen items: the user moves on
                tries += 1
                current_topic = int(prefs[rng.choice(n_pref, p=pref_w)]) if tries < 4 else int(rng.integers(n_topics))
                item = _draw(rng, weights, current_topic, -1, seen)
            if item < 0:  # nothing fresh came up: any unseen item by popularity
                pool = np.array([i for i in range(n_all) if i not in seen])
                w = catalog.popularity[pool]
                item = int(pool[rng.choice(len(pool), p=w / w.sum())])
            seen.add(item)
            current_topic, current_variant = int(catalog.topic[item]), int(catalog.variant[item])
            history.append((item, ts))
            ts += int(rng.integers(20, 3 * 3600))
        histories.append(history)
        next_ts.append(ts)
        if progress and ((u + 1) % step == 0 or u + 1 == n_users):
            progress(u + 1, n_users)

    # nobody picked these rare items: give each to a user who just watched its topic
    counts = np.bincount(np.fromiter((i for h in histories for i, _ in h), int), minlength=n_all)
    for item in np.flatnonzero(counts == 0):
        room = [u for u, h in enumerate(histories) if len(h) < max_len]
        if not room:
            break
        same = [u for u in room if catalog.topic[histories[u][-1][0]] == catalog.topic[item]]
        pool = same or room
        u = pool[int(rng.integers(len(pool)))]
        histories[u].append((int(item), next_ts[u]))
        next_ts[u] += int(rng.integers(20, 3 * 3600))
    return [(str(u + 1), item, ts) for u, history in enumerate(histories) for item, ts in history]


def _draw(rng: np.random.Generator, weights: list[tuple], topic: int, variant: int, seen: set[int],
          tries: int = 3, fresh: bool = False) -> int:
    """An item of ``topic`` by popularity (items of ``variant`` weighted up), or -1 when ``tries`` draws all
    hit items the user has already seen: rejection, not renormalisation, so a user who has seen a topic's
    hits moves on instead of digging into its tail, and the tail stays rare. ``fresh``: one draw among
    the topic's unseen items instead (-1 when there are none)."""
    members, w, p_same = weights[topic]
    p = w * np.where(variant == p_same, VARIANT_BOOST, 1.0) if variant >= 0 else w
    if fresh:   # renormalised over the unseen items
        p = p * np.fromiter((int(i) not in seen for i in members), bool, len(members))
        if not p.any():
            return -1
        return int(members[rng.choice(len(members), p=p / p.sum())])
    for item in members[rng.choice(len(members), tries, p=p / p.sum())]:
        if int(item) not in seen:
            return int(item)
    return -1


# ---------------------------------------------------------------------------------------- rendering

_AXIS = np.arange(SIZE, dtype=np.float32) + 0.5


def render_item(catalog: Catalog, index: int, *, seed: int = 0, video: Path | None = None,
                cover: Path | None = None, codec: str | None = None) -> None:
    """Render item ``index``: encode its clip to ``video`` and/or save its middle frame to ``cover``."""
    clip = _Clip(np.random.default_rng([seed, 3, index]), TOPICS[catalog.topic[index]],
                 int(catalog.variant[index]), int(catalog.n_frames[index]))
    middle = clip.n_frames // 2
    if video is not None:
        import av

        codec = codec or video_codec()
        with av.open(str(video), "w", format="mp4") as container:
            stream = container.add_stream(codec, rate=FPS)
            stream.width = stream.height = SIZE
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1   # reproducible bytes, and polite on shared cores
            if codec == "libx264":
                # no macroblock-tree rate control: with it, x264 wrote different bytes for the same frames from run to
                # run in one process; without it every clip is byte-for-byte reproducible (tests/test_demo.py)
                stream.options = {"crf": "26", "preset": "veryfast", "x264-params": "mbtree=0"}
            else:
                stream.bit_rate = 600_000
            for f in range(clip.n_frames):
                rgb = clip.frame(f)
                if f == middle and cover is not None:
                    _save_cover(rgb, cover)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = f
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    elif cover is not None:
        _save_cover(clip.frame(middle), cover)


def _save_cover(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path, format="JPEG", quality=88)


class _Clip:
    """One item's clip: a (panning) background texture and a few moving shapes, drawn frame by frame."""

    def __init__(self, rng: np.random.Generator, topic: Topic, variant: int, n_frames: int) -> None:
        self.topic, self.n_frames = topic, n_frames
        duration = n_frames / FPS
        # colours: the variant rotates the shape palette and tints the background; each item jitters both
        tint = np.array([[1.0, 1.0, 1.0], [1.12, 0.95, 0.88], [0.88, 0.97, 1.14]])[variant]
        jitter = rng.uniform(0.88, 1.12, 3)
        bg = np.clip(np.array(topic.background, float) * tint * jitter, 0, 255)
        colors = np.roll(np.array(topic.colors, float), -variant, axis=0)
        colors = np.clip(colors * rng.uniform(0.9, 1.1, (len(colors), 1)) + rng.normal(0, 8, colors.shape), 0, 255)
        # background canvas big enough to pan across for the whole clip
        pan = np.array(topic.pan, float) * rng.uniform(0.7, 1.3)
        if rng.random() < 0.5:
            pan = -pan
        extra = np.ceil(np.abs(pan) * duration).astype(int) + 2
        self.canvas = _texture(rng, topic.texture, variant, SIZE + extra[1], SIZE + extra[0], bg)
        self.pan = pan
        self.origin = np.where(pan < 0, extra - 1, 0)
        # shapes
        lo, hi = topic.n_shapes
        n = int(rng.integers(lo, hi + 1))
        r_lo, r_hi = topic.radius
        scale = (0.85, 1.0, 1.15)[variant]
        self.radius = rng.uniform(r_lo, r_hi, n) * scale
        self.color = colors[np.arange(n) % len(colors)].astype(np.uint8)
        self.x0 = rng.uniform(0.15, 0.85, n) * SIZE
        self.y0 = rng.uniform(0.15, 0.85, n) * SIZE
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.speed = topic.speed * rng.uniform(0.7, 1.3, n) * (1 if variant != 2 else 1.2)
        self.direction = rng.uniform(0, 2 * np.pi, n)
        self.spin = rng.uniform(-1.5, 1.5, n)
        self.center = rng.uniform(0.35, 0.65, 2) * SIZE

    def frame(self, f: int) -> np.ndarray:
        t = f / FPS
        ox, oy = (self.origin + self.pan * t).astype(int)
        img = np.ascontiguousarray(self.canvas[oy:oy + SIZE, ox:ox + SIZE])
        xs, ys, rs, angles = _positions(self, t)
        for j in range(len(xs)):
            _draw_shape(img, self.topic.shape, xs[j], ys[j], rs[j], angles[j], self.color[j], self.topic.shade)
        return img


def _positions(c: _Clip, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shape centres, radii and rotations at time ``t`` for the topic's motion pattern (all vectorised)."""
    n, r, ph, sp = len(c.radius), c.radius, c.phase, c.speed
    x, y = c.x0.copy(), c.y0.copy()
    radius = r.copy()
    angle = ph + c.spin * t
    motion = c.topic.motion
    if motion == "orbit":          # stirring around the pot
        ring = np.linspace(35, 80, n)
        a = ph + sp * t
        x, y = c.center[0] + ring * np.cos(a), c.center[1] + ring * np.sin(a)
    elif motion == "jump":         # pounce: hop in arcs across the floor
        x = _bounce(c.x0 + np.cos(c.direction) * sp * t, r)
        y = SIZE * 0.8 - r - 90 * np.abs(np.sin(np.pi * 1.1 * t + ph))
        angle = np.zeros(n)
    elif motion == "bounce":       # ball bouncing off the walls
        x = _bounce(c.x0 + np.cos(c.direction) * sp * t, r)
        y = _bounce(c.y0 + np.sin(c.direction) * sp * t, r)
    elif motion == "wave":         # sailing over waves
        x = _wrap(c.x0 + sp * t, r)
        y = c.y0 + 25 * np.sin(2 * np.pi * 0.6 * t + ph)
        angle = 0.3 * np.sin(2 * np.pi * 0.6 * t + ph)
    elif motion == "pulse":        # beat: shapes swell and shrink, spinning
        radius = r * (1 + 0.4 * np.sin(2 * np.pi * sp * t + ph))
        angle = ph + 1.5 * t * np.sign(c.spin)
    elif motion == "zigzag":       # arcade sprites: diagonal zigzags
        x = _wrap(c.x0 + sp * t * np.sign(np.cos(c.direction)), r)
        y = _bounce(c.y0 + sp * 1.3 * t, r)
        angle = np.zeros(n)
    elif motion == "lift":         # barbell going up and down
        y = SIZE * 0.55 + 55 * np.sin(sp * t + ph)
        x = SIZE * (np.arange(n) + 1) / (n + 1) + np.zeros(n)
        angle = np.zeros(n)
    elif motion == "dash":         # cars racing along lanes
        lanes = SIZE * (np.arange(n) + 1) / (n + 1)
        x = _wrap(c.x0 + sp * t * (1 + 0.3 * np.arange(n)), r * 1.6)
        y = lanes + 3 * np.sin(2 * np.pi * 3 * t + ph)
        angle = np.zeros(n)
    elif motion == "drift":        # slow floating bubbles
        x = c.x0 + 30 * np.cos(sp * t + ph)
        y = c.y0 + 30 * np.sin(0.7 * sp * t + ph)
    elif motion == "fall":         # leaves falling and swaying
        y = _wrap(c.y0 + sp * t, r)
        x = c.x0 + 18 * np.sin(2 * np.pi * 0.5 * t + ph)
        angle = ph + 0.8 * np.sin(2 * np.pi * 0.5 * t + ph)
    return x, y, radius, angle


def _bounce(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Reflect positions into [r, SIZE - r] (a triangle wave)."""
    span = SIZE - 2 * r
    u = np.mod(p - r, 2 * span)
    return r + np.where(u < span, u, 2 * span - u)


def _wrap(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Wrap positions around [-r, SIZE + r], so shapes leave one side and come back on the other."""
    return np.mod(p + r, SIZE + 2 * r) - r


def _draw_shape(img: np.ndarray, family: str, cx: float, cy: float, r: float, angle: float,
                color: np.ndarray, shade: float) -> None:
    reach = r * (1.6 if family in ("bar", "car") else 1.05) + 1
    x0, x1 = max(0, int(cx - reach)), min(SIZE, int(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(SIZE, int(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    dx = _AXIS[None, x0:x1] - cx
    dy = _AXIS[y0:y1, None] - cy
    ca, sa = np.cos(angle), np.sin(angle)
    u = dx * ca + dy * sa
    v = dy * ca - dx * sa
    rho2 = u * u + v * v
    if family == "circle":
        mask = rho2 <= r * r
    elif family == "square":
        mask = np.maximum(np.abs(u), np.abs(v)) <= 0.8 * r
    elif family == "triangle":   # pointing up, like a cat's ear
        mask = (v <= 0.5 * r) & (v >= -r + 1.7320508 * np.abs(u))
    elif family == "diamond":
        mask = np.abs(u) + np.abs(v) <= r
    elif family == "star":
        theta = np.arctan2(v, u)
        mask = rho2 <= (r * (0.55 + 0.45 * np.cos(5 * theta))) ** 2
    elif family == "bar":        # a barbell: bar plus two plates
        au, av_ = np.abs(u), np.abs(v)
        mask = ((au <= 1.5 * r) & (av_ <= 0.12 * r)) | ((au >= 1.1 * r) & (au <= 1.4 * r) & (av_ <= 0.6 * r))
    elif family == "car":        # body, cabin, wheels
        body = (np.abs(u) <= 1.5 * r) & (np.abs(v) <= 0.35 * r)
        cabin = (np.abs(u) <= 0.7 * r) & (v >= -0.85 * r) & (v <= 0)
        mask = body | cabin
    elif family == "ring":
        mask = (rho2 <= r * r) & (rho2 >= (0.62 * r) ** 2)
    elif family == "leaf":
        mask = (u / r) ** 2 + (v / (0.5 * r)) ** 2 <= 1
    else:
        raise ValueError(f"unknown shape family {family!r}")
    sub = img[y0:y1, x0:x1]
    if shade > 0:
        f = 1 - shade * np.minimum(np.sqrt(rho2[mask]) / (1.5 * r), 1)
        sub[mask] = (color[None, :] * f[:, None]).astype(np.uint8)
    else:
        sub[mask] = color
    if family == "car":          # dark wheels
        wheels = (((u - 0.9 * r) ** 2 + (v - 0.35 * r) ** 2) <= (0.3 * r) ** 2) | \
                 (((u + 0.9 * r) ** 2 + (v - 0.35 * r) ** 2) <= (0.3 * r) ** 2)
        sub[wheels] = 20


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a random ``cells``-grid upsampled with smoothstep interpolation."""
    gh, gw = cells + 1, int(np.ceil(cells * w / h)) + 1
    grid = rng.random((gh + 1, gw + 1)).astype(np.float32)
    yy = np.linspace(0, gh - 1, h, dtype=np.float32)
    xx = np.linspace(0, gw - 1, w, dtype=np.float32)
    iy, ix = yy.astype(int), xx.astype(int)
    fy, fx = yy - iy, xx - ix
    fy, fx = (fy * fy * (3 - 2 * fy))[:, None], (fx * fx * (3 - 2 * fx))[None, :]
    a = grid[iy][:, ix]
    b = grid[iy][:, ix + 1]
    c = grid[iy + 1][:, ix]
    d = grid[iy + 1][:, ix + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _texture(rng: np.random.Generator, kind: str, variant: int, h: int, w: int, bg: np.ndarray) -> np.ndarray:
    """An (h, w, 3) uint8 background of the given kind blending the two background colours."""
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    period = rng.uniform(0.8, 1.25) * (1.0, 0.8, 1.25)[variant]
    extra = None   # optional (mask, rgb) overlay
    if kind == "wood":
        warp = _smooth_noise(rng, h, w, 4)
        v = 0.5 + 0.5 * np.sin(2 * np.pi * x / (18 * period) + 5 * warp)
    elif kind == "fur":
        v = 0.65 * _smooth_noise(rng, h, w, 10) + 0.35 * _smooth_noise(rng, h, w, 40)
    elif kind == "field":
        v = (np.floor(x / (28 * period)) % 2).astype(np.float32) + 0 * y
        mid = w / 2 + rng.uniform(-40, 40)
        extra = (np.abs(x - mid) < 2) | (np.abs(np.hypot(x - mid, y - h / 2) - 45 * period) < 2)
    elif kind == "sky":
        horizon = h * rng.uniform(0.5, 0.65)
        v = np.clip((y - horizon) / 10, 0, 1) + 0 * x
        waves = (y > horizon) & (np.sin(2 * np.pi * x / (30 * period) + y / 6) > 0.85)
        extra = waves
    elif kind == "rings":
        cx, cy = w / 2 + rng.uniform(-30, 30), h / 2 + rng.uniform(-30, 30)
        v = 0.5 + 0.5 * np.sin(np.hypot(x - cx, y - cy) / (4 * period))
    elif kind == "checker":
        cell = int(16 * period)
        v = ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float32)
    elif kind == "diagonal":
        v = (np.sin(2 * np.pi * (x + y) / (26 * period)) > 0).astype(np.float32)
    elif kind == "road":
        v = np.zeros((h, w), np.float32) + 0.15 * _smooth_noise(rng, h, w, 30)
        lanes = [h / 3, 2 * h / 3]
        dashes = (np.mod(x, 40 * period) < 22 * period)
        extra = np.zeros((h, w), bool)
        for lane in lanes:
            extra |= (np.abs(y - lane) < 2) & dashes
    elif kind == "radial":
        cx, cy = w / 2 + rng.uniform(-50, 50), h / 2 + rng.uniform(-50, 50)
        v = np.clip(np.hypot(x - cx, y - cy) / (160 * period), 0, 1)
        v = v + 0.08 * _smooth_noise(rng, h, w, 6)
    elif kind == "leaves":
        v = (_smooth_noise(rng, h, w, 8) > 0.5).astype(np.float32) * 0.7 + 0.3 * _smooth_noise(rng, h, w, 30)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    v = np.clip(np.broadcast_to(v, (h, w)), 0, 1)[..., None]
    a, b = bg[0], bg[1] if len(bg) > 1 else bg[0]
    img = a[None, None, :] * (1 - v) + b[None, None, :] * v
    img = np.clip(img, 0, 255).astype(np.uint8)
    if extra is not None:
        img[np.broadcast_to(extra, (h, w))] = (235, 235, 235)
    return img


def _readme(seed: int, catalog: Catalog, n_users: int, n_interactions: int, codec: str,
            cover_only: tuple[str, ...], no_media: tuple[str, ...]) -> str:
    counts = np.bincount(catalog.topic, minlength=len(TOPICS))
    topics = "\n".join(f"  {t.name:<9} {counts[k]:>4} items  texture={t.texture}, shapes={t.shape}, "
                       f"motion={t.motion}" for k, t in enumerate(TOPICS))
    return f"""DFF Studio demo dataset (synthetic)
===================================

Generated by dff_core.demo.build_demo(seed={seed}, n_items={len(catalog.item_ids)}, n_users={n_users}).
Nothing here is real: the clips are moving coloured shapes on textured backgrounds, the titles are
built from word lists and the users are simulated. The same seed always gives the same files.

Files
  items.csv          item_id,title,video_path,cover_path,topic (paths relative to this folder)
  interactions.csv   user_id,item_id,timestamp (Unix seconds; time-ordered per user; no repeats)
  videos/ID.mp4      {MIN_FRAMES // FPS}-{MAX_FRAMES // FPS} s, {SIZE}x{SIZE}, {FPS} fps, codec {codec}
  covers/ID.jpg      the middle frame of each clip

{len(catalog.item_ids)} items, {n_users} users, {n_interactions} interactions.

Topics (latent; the `topic` column is for analysis only - a model should not be given it)
{topics}
Each topic has its own palette, background texture, shape family, motion pattern and title vocabulary;
items vary within a topic (three visual variants plus per-item jitter). About 7% of titles are generic.

Users have 1-3 preferred topics and {MIN_LEN}-{MAX_LEN} interactions. The next item usually stays in the
current topic (often the same visual variant), else returns to a preferred topic, rarely explores.
Popularity within a topic is Zipf-like (exponent {ZIPF_EXPONENT}): a few hits, a long tail of rare items.

Media fallbacks (on purpose)
  cover only, no video: {', '.join(cover_only) or '-'}
  neither video nor cover: {', '.join(no_media) or '-'}
"""


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dff_core.demo", description="build the seeded demo dataset")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args(argv)
    files = build_demo(args.out_dir, seed=args.seed, n_items=args.items, n_users=args.users)
    print(f"{files.root}: {files.n_items} items ({files.n_videos} videos, {files.n_covers} covers, codec "
          f"{files.codec}), {files.n_users} users, {files.n_interactions} interactions in {files.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
