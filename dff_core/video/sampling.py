"""Uniform frame sampling from a video file with PyAV, and the cover-image fallback.

Frames are resized keeping the aspect ratio so that the *short* side equals ``size`` and then
center-cropped to ``size x size`` (the long side loses its edges; nothing is padded or stretched).

Sampling picks ``num_frames`` timestamps at the centres of equal segments of the clip's duration,
``t_i = (i + 0.5) * duration / num_frames``, and takes the frame shown at each timestamp. A clip with
fewer frames than ``num_frames`` therefore yields repeated frames. Long 720p HEVC clips are handled
without decoding every frame: the packets are demuxed once (cheap, no decoding) to find the keyframes,
and the decoder seeks to a target's keyframe whenever that skips frames, so no frame is decoded twice
and groups of pictures without a target are never decoded.
"""
from __future__ import annotations

import bisect
import math
import os
from pathlib import Path

import numpy as np

__all__ = ["VideoError", "sample_frames", "sample_frames_with_times", "load_cover", "load_item_visual",
           "resize_center_crop"]


class VideoError(Exception):
    """A video (or cover) that cannot be read; the message is a short human reason naming the file."""


def _target_times(duration: float, num_frames: int) -> list[float]:
    return [(i + 0.5) * duration / num_frames for i in range(num_frames)]


def _crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """Scaled (w, h) with the short side = size, then the crop offsets (x0, y0)."""
    scale = size / min(width, height)
    w, h = max(size, round(width * scale)), max(size, round(height * scale))
    return w, h, (w - size) // 2, (h - size) // 2


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, size, 3] uint8: short side to ``size`` (aspect kept), centre crop."""
    from PIL import Image

    h0, w0 = image.shape[:2]
    w, h, x0, y0 = _crop_box(w0, h0, size)
    im = Image.fromarray(image).resize((w, h), Image.BILINEAR, reducing_gap=2.0 if min(w0, h0) > 2 * size else None)
    return np.asarray(im)[y0:y0 + size, x0:x0 + size].copy()


def _frame_to_array(frame, size: int) -> np.ndarray:
    w, h, x0, y0 = _crop_box(frame.width, frame.height, size)
    # swscale does the resize (area filter for downscaling) on the decoded YUV frame: much cheaper than RGB+PIL
    arr = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")
    return np.ascontiguousarray(arr[y0:y0 + size, x0:x0 + size])


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def sample_frames_with_times(path: str | os.PathLike, num_frames: int = 8, size: int = 224
                             ) -> tuple[np.ndarray, np.ndarray, float]:
    """Like :func:`sample_frames`, also returning each frame's timestamp in seconds and the duration."""
    import av

    if num_frames < 1:
        raise ValueError("num_frames must be at least 1")
    path = str(path)
    if not os.path.isfile(path):
        raise VideoError(f"video file not found: {path}")
    if os.path.getsize(path) == 0:
        raise VideoError(f"cannot decode {path}: empty file")
    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as e:  # av.error.InvalidDataError and friends
        raise VideoError(f"cannot decode {path}: {_reason(e)}") from e
    try:
        if not container.streams.video:
            raise VideoError(f"cannot decode {path}: no video stream")
        stream = container.streams.video[0]
        tb = float(stream.time_base) if stream.time_base else None
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None and tb else 0.0
        rate = float(stream.average_rate) if stream.average_rate else None

        # One cheap demux pass: keyframe times and the last packet end (a reliable duration).
        keyframes: list[float] = []
        end, last_pts = 0.0, -math.inf
        try:
            for packet in container.demux(stream):
                if packet.pts is None or tb is None:
                    continue
                t = packet.pts * tb - start
                if packet.is_keyframe:
                    keyframes.append(t)
                end = max(end, t + (packet.duration or 0) * tb)
                last_pts = max(last_pts, t)
        except Exception as e:
            raise VideoError(f"cannot decode {path}: {_reason(e)} while reading packets") from e
        declared = None
        if stream.duration and tb:
            declared = float(stream.duration * stream.time_base)
        elif container.duration:
            declared = container.duration / 1e6
        if declared and end > 0 and end < 0.9 * declared - 0.2:
            raise VideoError(f"cannot decode {path}: truncated, packets end at {end:.2f}s of {declared:.2f}s")
        duration = end if end > 0 else (declared or 0.0)
        keyframes.sort()

        targets = _target_times(duration, num_frames) if duration > 0 else None
        picked: list[np.ndarray | None] = [None] * num_frames
        times = np.zeros(num_frames, dtype=np.float64)

        if targets is None:  # no timing information at all: decode everything (small) and pick uniformly
            container.seek(0)
            all_frames = [_frame_to_array(f, size) for f in container.decode(stream)]
            if not all_frames:
                raise VideoError(f"cannot decode {path}: no frames")
            idx = [min(len(all_frames) - 1, int((i + 0.5) * len(all_frames) / num_frames)) for i in range(num_frames)]
            fps = rate or 1.0
            return np.stack([all_frames[i] for i in idx]), np.array([i / fps for i in idx]), len(all_frames) / fps

        i = 0
        last_time = -math.inf       # time of the last decoded frame
        prev = None                 # (time, frame) of the last decoded frame, converted lazily
        prev_arr = None
        decoded = 0
        need_seek = True
        while i < num_frames:
            if need_seek:
                k = bisect.bisect_right(keyframes, targets[i]) - 1
                kf = keyframes[k] if k >= 0 else 0.0
                if prev is None or kf > last_time + 1e-6:
                    container.seek(int((kf + start) / tb) if tb else 0, stream=stream, backward=True)
                    prev, prev_arr, last_time = None, None, -math.inf
            need_seek = False
            try:
                for frame in container.decode(stream):
                    decoded += 1
                    t = (frame.time - start) if frame.time is not None else (decoded - 1) / (rate or 1.0)
                    while i < num_frames and t > targets[i] + 1e-6:
                        # ``prev`` is the frame on screen at targets[i]; before the first frame take this one
                        if prev is None:
                            prev, prev_arr = (t, frame), None
                        if prev_arr is None:
                            prev_arr = _frame_to_array(prev[1], size)
                        picked[i], times[i] = prev_arr, prev[0]
                        i += 1
                    prev, prev_arr, last_time = (t, frame), None, t
                    if i >= num_frames:
                        break
                    k = bisect.bisect_right(keyframes, targets[i]) - 1
                    if k >= 0 and keyframes[k] > t + 1e-6 and keyframes[k] - t > 0.5:
                        need_seek = True  # the next target's keyframe lies ahead: skip the frames between
                        break
                else:
                    break  # end of stream
            except VideoError:
                raise
            except Exception as e:
                raise VideoError(f"cannot decode {path}: {_reason(e)} (after {decoded} frames)") from e
            if not need_seek:
                break
        if i < num_frames:  # end of stream before the last targets
            if prev is None:
                raise VideoError(f"cannot decode {path}: no frames could be decoded")
            if last_time < last_pts - 0.5 - 0.1 * duration:
                raise VideoError(f"cannot decode {path}: truncated, frames end at {max(last_time, 0):.2f}s "
                                 f"of {duration:.2f}s")
            arr = prev_arr if prev_arr is not None else _frame_to_array(prev[1], size)
            for j in range(i, num_frames):
                picked[j], times[j] = arr, prev[0]
        return np.stack(picked), times, duration
    finally:
        container.close()


def sample_frames(path: str | os.PathLike, num_frames: int = 8, size: int = 224) -> np.ndarray:
    """``num_frames`` frames sampled uniformly over the clip -> uint8 ``[num_frames, size, size, 3]`` (RGB).

    Raises :class:`VideoError` (with a human reason naming the file) for a missing, empty, corrupt or
    truncated video."""
    return sample_frames_with_times(path, num_frames, size)[0]


def load_cover(path: str | os.PathLike, size: int = 224) -> np.ndarray:
    """A cover image -> uint8 ``[size, size, 3]`` (short side to ``size``, centre crop)."""
    from PIL import Image, UnidentifiedImageError

    path = str(path)
    if not os.path.isfile(path):
        raise VideoError(f"cover image not found: {path}")
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale when much larger
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VideoError(f"cannot read cover {path}: {_reason(e)}") from e
    return resize_center_crop(arr, size)


def _exists(path) -> bool:
    return path is not None and str(path) != "" and Path(str(path)).is_file()


def load_item_visual(video_path: str | None, cover_path: str | None, num_frames: int = 8, size: int = 224,
                     *, return_times: bool = False):
    """Frames for one item -> ``(frames, source)`` with source ``"video"``, ``"cover"`` or ``None``.

    * a video file that exists is sampled; if it is corrupt or truncated :class:`VideoError` is raised
      (the item fails rather than silently using a different input);
    * no video (``None``, empty or a path that does not exist) -> the cover image repeated ``num_frames``
      times (``source="cover"``);
    * neither -> ``(None, None)``.

    With ``return_times=True`` a third element gives the frame timestamps in seconds (``None`` for a
    cover or nothing) and a fourth the clip duration."""
    if _exists(video_path):
        frames, times, duration = sample_frames_with_times(video_path, num_frames, size)
        return (frames, "video", times, duration) if return_times else (frames, "video")
    if _exists(cover_path):
        cover = load_cover(cover_path, size)
        frames = np.repeat(cover[None], num_frames, axis=0)
        return (frames, "cover", None, None) if return_times else (frames, "cover")
    return (None, None, None, None) if return_times else (None, None)
