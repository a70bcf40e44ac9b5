"""torchvision architectures adapted to 1-channel 48x48 faces.

Each net is the standard torchvision one (so ImageNet weights load unchanged) with:
- a 1-channel first conv of the same kernel size (RGB weights summed when pretrained);
- the early downsampling removed, so 48 px does not shrink to a 1x1 map;
- a fresh classifier with ``dropout`` before its last linear layer.
All of them ignore ``width`` and ``batch_norm`` (VGG always uses BatchNorm: without it the 16
layers from scratch tend to collapse to predicting one class).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn
from torchvision import models as tvm

from fer_search.models._common import FerNet, grey_conv, load_imagenet
from fer_search.models._registry import register_model
from fer_search.models._torchvision_compat import vgg_cfgs, vgg_layers


def _head(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))


@register_model
def vgg16(
    num_classes: int = 7,
    *,
    dropout: float = 0.0,
    input_size: int = 48,
    pretrained: bool = False,
    weights_path: str = "",
) -> FerNet:
    """VGG16 with BatchNorm (vgg16_bn). The fifth max-pool is dropped (48 px ends at 3x3, not
    1x1) and the 4096-wide classifier is replaced by avg-pool, 512 -> 256, dropout, -> classes.
    """
    if pretrained:
        net = tvm.vgg16_bn(weights=None)
        load_imagenet(net, tvm.VGG16_BN_Weights.DEFAULT, weights_path, arch="vgg16 (vgg16_bn)")
        features = net.features
    else:
        # Build only the conv stack: the unused 120M-parameter classifier takes seconds to init.
        features = vgg_layers(vgg_cfgs["D"], batch_norm=True)
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    features[0] = grey_conv(features[0], stride=1, keep_weights=pretrained)
    del features[-1]  # the last max-pool
    body = nn.Sequential(
        features,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(256, num_classes),
    )
    return FerNet(body, input_size)


@register_model
def resnet101(
    num_classes: int = 7,
    *,
    dropout: float = 0.0,
    input_size: int = 48,
    pretrained: bool = False,
    weights_path: str = "",
) -> FerNet:
    """ResNet-101 with conv1 7x7 at stride 1 and no max-pool: stages at 48, 24, 12, 6 px."""
    net = tvm.resnet101(weights=None)
    if pretrained:
        load_imagenet(net, tvm.ResNet101_Weights.DEFAULT, weights_path, arch="resnet101")
    net.conv1 = grey_conv(net.conv1, stride=1, keep_weights=pretrained)
    net.maxpool = nn.Identity()
    net.fc = _head(net.fc.in_features, num_classes, dropout)
    return FerNet(net, input_size)


@register_model
def mobilenet_v2(
    num_classes: int = 7,
    *,
    dropout: float = 0.0,
    input_size: int = 48,
    pretrained: bool = False,
    weights_path: str = "",
) -> FerNet:
    """MobileNetV2 with the first conv and the first stride-2 block at stride 1 (CIFAR style):
    48 px ends at 6x6 instead of 2x2."""
    net = tvm.mobilenet_v2(weights=None)
    if pretrained:
        load_imagenet(net, tvm.MobileNet_V2_Weights.DEFAULT, weights_path, arch="mobilenet_v2")
    stem = net.features[0]
    stem[0] = grey_conv(stem[0], stride=1, keep_weights=pretrained)
    net.features[2].conv[1][0].stride = (1, 1)  # depthwise conv of the first 24-channel block
    net.classifier = _head(net.last_channel, num_classes, dropout)
    return FerNet(net, input_size)


# The DenseNet ImageNet files predate torchvision's renaming of 'norm.1' to 'norm1' (as
# torchvision.models.densenet._load_state_dict, which would download).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _densenet_keys(state: dict[str, Any]) -> dict[str, Any]:
    # renamed in place, so the loaded dict keeps its _metadata (BatchNorm versions)
    for key in list(state):
        if match := _DENSENET_OLD_KEY.match(key):
            state[match.group(1) + match.group(2)] = state.pop(key)
    return state


@register_model
def densenet169(
    num_classes: int = 7,
    *,
    dropout: float = 0.0,
    input_size: int = 48,
    pretrained: bool = False,
    weights_path: str = "",
) -> FerNet:
    """DenseNet-169 with conv0 7x7 at stride 1 and no pool0: dense blocks at 48, 24, 12, 6 px."""
    net = tvm.densenet169(weights=None)
    if pretrained:
        load_imagenet(
            net,
            tvm.DenseNet169_Weights.DEFAULT,
            weights_path,
            arch="densenet169",
            fix_keys=_densenet_keys,
        )
    net.features.conv0 = grey_conv(net.features.conv0, stride=1, keep_weights=pretrained)
    net.features.pool0 = nn.Identity()
    net.classifier = _head(net.classifier.in_features, num_classes, dropout)
    return FerNet(net, input_size)
