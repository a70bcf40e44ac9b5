"""The original study's network: three conv blocks, one dense layer, dropout, logits."""

from __future__ import annotations

from torch import nn

from fer_search.config import parse_blocks
from fer_search.errors import UserError
from fer_search.models._common import FerNet
from fer_search.models._registry import register_model


def _conv(c_in: int, c_out: int, batch_norm: bool, pool: str = "") -> list[nn.Module]:
    """conv + BatchNorm + ReLU, with a 2x2 max-pool after (pool="after") or straight after the
    conv (pool="before_norm")."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    norm: list[nn.Module] = [nn.BatchNorm2d(c_out)] if batch_norm else []
    if pool == "before_norm":
        return [conv, nn.MaxPool2d(2), *norm, nn.ReLU(inplace=True)]
    return [conv, *norm, nn.ReLU(inplace=True)] + ([nn.MaxPool2d(2)] if pool else [])


@register_model
def simple_cnn(
    num_classes: int = 7,
    *,
    dropout: float = 0.0,
    batch_norm: bool = True,
    width: int = 32,
    depth: int = 3,
    convs: int = 2,
    blocks: str = "",
    pool_before_norm: bool = False,
    input_size: int = 48,
    pretrained: bool = False,
) -> FerNet:
    """``depth`` blocks of ``convs`` 3x3 convs (+BatchNorm) + ReLU + 2x2 max-pool, with width,
    2*width, 4*width, ... channels; flatten; dense (last block's channels) + ReLU + dropout;
    linear to the classes. ``blocks`` ("1,1,2,2") gives each block its own number of convs
    instead (VGG-style: the extra convs where the maps are small and cheap); it overrides
    ``depth`` and ``convs``.

    The default (3 blocks of 2 convs) is the study's network: about 0.88M parameters at width 32
    and 48 px. ``depth=4, convs=1`` is the cheaper, deeper VGG-style net that suits a CPU (about
    1M parameters at width 32, under half the convolution work). ``pool_before_norm`` moves each
    block's max-pool from after the ReLU to straight after its last conv, so BatchNorm and ReLU
    work on a quarter of the pixels (and BatchNorm normalises what the next block sees): with
    one 20-epoch recipe on FER2013, the 4-block net took 23 s instead of 26 s per epoch on this
    project's 2-core CPU and reached 64.64 % instead of 62.66 % PublicTest accuracy (README).
    ``input_size`` resizes the input first (the dense layer grows with it).
    """
    if pretrained:
        raise UserError("simple_cnn has no pretrained weights; set pretrained to false")
    counts = parse_blocks(blocks) if blocks else (convs,) * depth
    side = input_size // 2 ** len(counts)
    if len(counts) < 1 or min(counts) < 1 or side < 1:
        shape = f"blocks={blocks!r}" if blocks else f"depth={depth}, convs={convs}"
        raise UserError(
            f"simple_cnn needs depth >= 1, convs >= 1 and input_size >= 2**depth; got "
            f"{shape}, input_size={input_size}"
        )
    layers: list[nn.Module] = []
    c_in = 1
    last_pool = "before_norm" if pool_before_norm else "after"
    for block, n_convs in enumerate(counts):
        c_out = width * 2**block
        for i in range(n_convs):
            layers += _conv(c_in, c_out, batch_norm, last_pool if i == n_convs - 1 else "")
            c_in = c_out
    hidden = c_in
    layers += [
        nn.Flatten(),
        nn.Linear(c_in * side * side, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    ]
    return FerNet(nn.Sequential(*layers), input_size)
