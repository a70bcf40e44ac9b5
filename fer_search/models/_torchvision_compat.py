"""The torchvision names models/tv.py uses beyond its public API, in one place.

`torchvision.models.vgg.cfgs` and `make_layers` build VGG's conv stack alone (the public
`vgg16_bn()` also initialises a 120M-parameter classifier we would throw away, which takes
seconds); neither is in the module's `__all__`. They are unchanged from torchvision 0.13
through 0.29, the version pyproject.toml floors at (tests/test_models.py builds vgg16 with
them on every run)."""

from __future__ import annotations

from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers as vgg_layers

__all__ = ["vgg_cfgs", "vgg_layers"]
