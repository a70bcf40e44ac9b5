"""Every registered model: shapes, learning, checkpoint round trip, input size, ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models as tvm

from fer_search.config import MODEL_NAMES
from fer_search.errors import UserError
from fer_search.models import create_model, list_models


@pytest.fixture
def hub_dir(tmp_path: Path):
    """Point the torch hub cache at an empty tmp dir for the test, then restore it."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        yield tmp_path / "hub"
    finally:
        torch.hub.set_dir(old)


def test_registered_names_are_the_config_names():
    assert tuple(list_models()) == MODEL_NAMES


@pytest.mark.parametrize("name", list_models())
def test_model_learns_a_tiny_batch(name: str):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    x = torch.randn(4, 1, 48, 48)
    y = torch.tensor([0, 3, 5, 6])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        logits = model(x)
        assert logits.shape == (4, 7)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", list_models())
def test_rebuild_from_fer_args_loads_the_weights(name: str):
    model = create_model(name, dropout=0.2, input_size=56).eval()
    assert model.fer_args["name"] == name and model.fer_args["input_size"] == 56
    copy = create_model(**model.fer_args).eval()
    copy.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x))


def test_unknown_model_suggests_the_close_name():
    with pytest.raises(UserError, match="unknown model 'densnet169'; did you mean 'densenet169'"):
        create_model("densnet169")


@pytest.mark.parametrize("name", ["simple_cnn", "mobilenet_v2"])
def test_input_size_resizes_inside_the_model(name: str):
    model = create_model(name, input_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 48, 48)).shape == (3, 7)
        assert model(torch.randn(3, 1, 64, 64)).shape == (3, 7)


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="dropout"):
        create_model("simple_cnn", dropout=1.0)
    with pytest.raises(UserError, match="input_size"):
        create_model("vgg16", input_size=16)
    with pytest.raises(UserError, match="no pretrained weights"):
        create_model("simple_cnn", pretrained=True)


def test_model_rejects_rgb_input():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\).*\(2, 3, 48, 48\)"):
        create_model("simple_cnn")(torch.randn(2, 3, 48, 48))


def test_simple_cnn_without_batch_norm():
    model = create_model("simple_cnn", batch_norm=False, width=8)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(2, 1, 48, 48)).shape == (2, 7)


@pytest.mark.parametrize(("depth", "convs"), [(3, 2), (4, 1), (2, 3)])
def test_simple_cnn_depth_and_convs(depth: int, convs: int):
    model = create_model("simple_cnn", width=8, depth=depth, convs=convs)
    conv_layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(conv_layers) == depth * convs and len(pools) == depth
    assert conv_layers[-1].out_channels == 8 * 2 ** (depth - 1)
    assert model(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    rebuilt = create_model(**model.fer_args)
    rebuilt.load_state_dict(model.state_dict())  # the checkpoint's args rebuild the same net


@pytest.mark.parametrize("convs", [1, 2])
def test_simple_cnn_pool_before_norm(convs: int):
    model = create_model("simple_cnn", width=8, depth=4, convs=convs, pool_before_norm=True)
    kinds = [type(m).__name__ for m in model.body if not isinstance(m, torch.nn.Flatten)]
    block = ["Conv2d", "BatchNorm2d", "ReLU"] * (convs - 1)
    block += ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    assert kinds[: 4 * len(block)] == block * 4  # each block pools before its last norm
    # the same weights as the default order, only the pooling moves: the parameters line up
    plain = create_model("simple_cnn", width=8, depth=4, convs=convs)
    assert [p.shape for p in model.parameters()] == [p.shape for p in plain.parameters()]
    assert model(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    assert model.fer_args["pool_before_norm"] is True
    create_model(**model.fer_args).load_state_dict(model.state_dict())


def test_simple_cnn_blocks_give_each_block_its_convs():
    model = create_model("simple_cnn", width=8, depth=2, convs=3, blocks="1,1,2,2")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 32, 64, 64]  # depth/convs ignored
    assert len(pools) == 4
    assert model(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    create_model(**model.fer_args).load_state_dict(model.state_dict())


@pytest.mark.parametrize("blocks", ["1,x", "1,0,2", ",", "1,1,1,1,1,1"])
def test_simple_cnn_bad_blocks_are_user_errors(blocks: str):
    with pytest.raises(UserError, match="blocks"):
        create_model("simple_cnn", blocks=blocks)


def test_simple_cnn_too_deep_for_the_input_is_a_user_error():
    with pytest.raises(UserError, match="depth=6"):
        create_model("simple_cnn", depth=6)
    with pytest.raises(UserError, match="convs=0"):
        create_model("simple_cnn", convs=0)


def test_pretrained_from_a_local_file_sums_the_rgb_conv(tmp_path: Path, hub_dir: Path):
    reference = tvm.mobilenet_v2(weights=None)
    path = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("mobilenet_v2", pretrained=True, weights_path=str(path))
    net = model.body
    rgb = reference.features[0][0].weight
    torch.testing.assert_close(net.features[0][0].weight, rgb.sum(dim=1, keepdim=True))
    inner = net.features[5].conv[1][0].weight
    torch.testing.assert_close(inner, reference.features[5].conv[1][0].weight)
    assert net.classifier[-1].out_features == 7
    # the checkpoint carries the weights: rebuilding must not need the file
    assert model.fer_args["pretrained"] is False and model.fer_args["weights_path"] == ""
    path.unlink()
    create_model(**model.fer_args).load_state_dict(model.state_dict())


def test_pretrained_from_the_hub_cache(hub_dir: Path):
    file = hub_dir / "checkpoints" / Path(tvm.MobileNet_V2_Weights.DEFAULT.url).name
    file.parent.mkdir(parents=True)
    reference = tvm.mobilenet_v2(weights=None)
    torch.save(reference.state_dict(), file)
    model = create_model("mobilenet_v2", pretrained=True)
    rgb = reference.features[0][0].weight
    torch.testing.assert_close(model.body.features[0][0].weight, rgb.sum(dim=1, keepdim=True))


def test_pretrained_densenet_accepts_old_checkpoint_keys(tmp_path: Path):
    reference = tvm.densenet169(weights=None)
    # the ImageNet file spells 'denselayer1.norm1.weight' as 'denselayer1.norm.1.weight'
    state = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
        for k, v in reference.state_dict().items()
    }
    assert any(".norm.1." in k for k in state)
    path = tmp_path / "densenet169.pth"
    torch.save(state, path)
    model = create_model("densenet169", pretrained=True, weights_path=str(path))
    torch.testing.assert_close(
        model.body.features.conv0.weight, reference.features.conv0.weight.sum(1, keepdim=True)
    )


def test_pretrained_without_a_file_says_what_is_missing(hub_dir: Path):
    with pytest.raises(UserError, match=r"mobilenet_v2-7ebf99e0\.pth not found.*--weights-path"):
        create_model("mobilenet_v2", pretrained=True)


def test_pretrained_with_the_wrong_file_is_a_user_error(tmp_path: Path):
    path = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="does not fit mobilenet_v2"):
        create_model("mobilenet_v2", pretrained=True, weights_path=str(path))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read weights file"):
        create_model("mobilenet_v2", pretrained=True, weights_path=str(path))
