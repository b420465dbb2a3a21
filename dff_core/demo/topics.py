"""The demo's topics (palette, texture, shapes, motion, title vocabulary) and the item catalogue drawn from
them: which topic, visual variant, popularity, title and media each item gets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 224                 # clip width and height, pixels
FPS = 8                    # frames per second
MIN_FRAMES, MAX_FRAMES = 2 * FPS, 4 * FPS   # 2-4 s per clip
ZIPF_EXPONENT = 2.5        # popularity of the rank-r item in its topic is proportional to r ** -ZIPF_EXPONENT
N_VARIANTS = 3             # visual variants per topic


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
