"""Frame sampling: shapes, uniform picking, short clips, cover fallback, corrupt / truncated / missing files."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from dff_core.video import VideoError, load_cover, load_item_visual, sample_frames, sample_frames_with_times
from data_helpers import MICROLENS
from tests.media_helpers import frame_value, write_image, write_video


def grey(frames: np.ndarray) -> np.ndarray:
    """Mean grey level of each frame away from the white corner marker."""
    return frames[:, 16:, 16:].reshape(len(frames), -1).mean(axis=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", num_frames=40, fps=10, gop=8)


def test_uniform_sampling_shape_and_order(clip):
    frames, times, duration = sample_frames_with_times(clip, num_frames=8, size=32)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
    assert duration == pytest.approx(4.0, abs=0.15)
    # targets are segment centres (i + 0.5) * 4 s / 8 -> frames 2, 7, 12, ..., 37 at 10 fps
    expected = [frame_value(int((i + 0.5) * 40 / 8)) for i in range(8)]
    np.testing.assert_allclose(grey(frames), expected, atol=4)
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, [(int((i + 0.5) * 40 / 8)) / 10 for i in range(8)], atol=0.051)


def test_aspect_kept_and_center_cropped(clip):
    frames = sample_frames(clip, num_frames=2, size=48)  # 80x48 -> short side 48 already: crop 16 px each side
    assert frames.shape == (2, 48, 48, 3)
    # the white 8x8 marker at x<8 of the source is cut away by the centre crop
    assert frames[:, :6, :6].mean() < 200
    frames = sample_frames(clip, num_frames=2, size=96)  # upscaled x2: 160x96 -> crop 32 px each side
    assert frames.shape == (2, 96, 96, 3)


def test_short_clip_repeats_frames(tmp_path):
    path = write_video(tmp_path / "short.mp4", num_frames=3, fps=10, gop=3)
    frames = sample_frames(path, num_frames=8, size=32)
    assert frames.shape == (8, 32, 32, 3)
    levels = grey(frames)
    assert len(np.unique(levels.round())) == 3  # each of the 3 frames appears, some repeated
    assert np.all(np.diff(levels) >= -1)        # still in time order
    np.testing.assert_allclose(sorted(set(levels.round())), [frame_value(i) for i in range(3)], atol=4)


def test_h264_with_b_frames(tmp_path):
    path = write_video(tmp_path / "x264.mp4", num_frames=50, fps=25, gop=12, codec="libx264")
    frames = sample_frames(path, num_frames=5, size=32)
    expected = [frame_value(int((i + 0.5) * 50 / 5)) for i in range(5)]
    np.testing.assert_allclose(grey(frames), expected, atol=6)


def test_missing_empty_random_bytes(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        sample_frames(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        sample_frames(tmp_path / "empty.mp4")
    rnd = tmp_path / "random.mp4"
    rnd.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError) as e:
        sample_frames(rnd)
    assert "cannot decode" in str(e.value) and "random.mp4" in str(e.value)


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated(tmp_path, faststart):
    good = write_video(tmp_path / "good.mp4", num_frames=60, fps=10, gop=10, faststart=faststart)
    data = good.read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError) as e:
        sample_frames(bad, num_frames=8, size=32)
    assert "cut.mp4" in str(e.value)


def test_cover_fallback_and_nothing(tmp_path, clip):
    cover = write_image(tmp_path / "c.jpg", value=77)
    frames, source = load_item_visual(None, str(cover), num_frames=4, size=32)
    assert source == "cover" and frames.shape == (4, 32, 32, 3)
    assert abs(frames.mean() - 77) < 3 and np.array_equal(frames[0], frames[3])
    frames, source = load_item_visual(str(tmp_path / "missing.mp4"), str(cover), num_frames=4, size=32)
    assert source == "cover"
    frames, source = load_item_visual(str(clip), str(cover), num_frames=4, size=32)
    assert source == "video" and abs(frames.mean() - 77) > 5
    assert load_item_visual(None, None, 4, 32) == (None, None)
    assert load_item_visual("", str(tmp_path / "none.jpg"), 4, 32) == (None, None)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(VideoError, match="cover"):
        load_cover(tmp_path / "bad.jpg")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoError):  # a corrupt video is an error, not a silent switch to the cover
        load_item_visual(str(bad), str(cover), 4, 32)


@pytest.mark.skipif(not (MICROLENS / "videos").is_dir(), reason="MicroLens sample videos not present")
def test_real_microlens_hevc():
    videos = sorted((MICROLENS / "videos").glob("*.mp4"))[:1]
    for v in videos:
        t = time.perf_counter()
        frames, times, duration = sample_frames_with_times(v, num_frames=4, size=64)
        assert frames.shape == (4, 64, 64, 3) and duration > 1
        assert np.all(np.diff(times) > 0) and times[-1] < duration
        assert frames.std() > 5  # real content, not a blank frame
        assert time.perf_counter() - t < 30
    covers = sorted((MICROLENS / "covers").glob("*.jpg"))[:1]
    for c in covers:
        assert load_cover(c, 64).shape == (64, 64, 3)
