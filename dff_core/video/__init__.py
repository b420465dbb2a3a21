"""Video input: uniform frame sampling (PyAV) and the cover-image fallback. See :mod:`.sampling`."""
from .sampling import (VideoError, load_cover, load_item_visual, resize_center_crop, sample_frames,
                       sample_frames_with_times)

__all__ = ["VideoError", "sample_frames", "sample_frames_with_times", "load_cover", "load_item_visual",
           "resize_center_crop"]
