"""Small media files rendered on the fly for the video / extraction tests (no data ships in the repo)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def frame_value(i: int) -> int:
    """Grey level of frame ``i`` in :func:`write_video` clips (distinct per frame, increasing)."""
    return 20 + (i * 7) % 220


def write_video(path: Path, num_frames: int = 30, width: int = 80, height: int = 48, fps: int = 10,
                gop: int = 8, codec: str = "mpeg4", faststart: bool = False) -> Path:
    """An mp4 whose frame ``i`` is a flat grey ``frame_value(i)`` with a white square in the top-left
    corner (so orientation / cropping is visible); keyframes every ``gop`` frames."""
    import av

    path = Path(path)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.options = {"qscale": "2"} if codec == "mpeg4" else {}
        for i in range(num_frames):
            img = np.full((height, width, 3), frame_value(i), np.uint8)
            img[:8, :8] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_image(path: Path, value: int = 128, width: int = 96, height: int = 64) -> Path:
    from PIL import Image

    img = np.full((height, width, 3), value, np.uint8)
    Image.fromarray(img).save(path)
    return Path(path)
