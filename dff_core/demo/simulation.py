"""Users' interaction sequences over the demo catalogue: preferred topics, staying with a topic (and its visual
variant), Zipf popularity within a topic, and seeded timestamps."""
from __future__ import annotations

from typing import Callable

import numpy as np

from dff_core.demo.topics import TOPICS, Catalog

BASE_TIME = 1_700_000_000  # Unix seconds of the earliest possible interaction

# Interaction process
P_STAY = 0.75              # next item keeps the current topic (favouring items of the current variant)
VARIANT_BOOST = 3.0        # ... by this popularity factor
P_EXPLORE = 0.06           # next item's topic is uniform over all topics (else: a preferred topic)
P_DIG = 0.5                # when popularity draws only gave seen items: chance to pick among the topic's unseen
                           # items (else the user moves to another topic); this sets how long the tail is
MIN_LEN, MAX_LEN = 5, 30   # interactions per user
MEAN_EXTRA_LEN = 5.5       # length = MIN_LEN + a truncated geometric number with this mean


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
