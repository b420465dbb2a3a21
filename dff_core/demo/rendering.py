"""The demo's clips and covers: each item's topic drawn as moving shapes over a textured background, encoded
with PyAV (h264 when this build has libx264, else mpeg4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dff_core.demo.topics import FPS, SIZE, TOPICS, Catalog

def video_codec() -> str:
    """h264 through libx264 when this PyAV build has it, else mpeg4."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


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
