"""Peak memory of a style-transfer job, estimated from its settings (for admission control).

The estimate counts what autograd keeps for one evaluation (every ReLU and pooling output up
to the deepest layer in use, max-pooling indices, the gradients in flight), the optimiser's
state, the network's weights and the style images' forward passes, then adds a margin for
allocator fragmentation and cuDNN workspaces, and on CUDA the context's fixed cost.
"""

from __future__ import annotations

import itertools

from nst_engine.errors import ImageError
from nst_engine.imageio import probe_image
from nst_engine.presets import BF16_ON_CUDA, LBFGS_HISTORY, MAX_SIZE, MIN_SIZE, resolve_size_steps
from nst_engine.request import StyleRequest

_BLOCK_CHANNELS = (64, 128, 256, 512, 512)
_CONVS_PER_BLOCK = (2, 2, 4, 4, 4)
FLOAT = 4
INDEX = 8  # max pooling keeps an int64 index per output element
FRAGMENTATION = 1.25
FIXED_OVERHEAD = {"cuda": 700 * 2**20, "cpu": 400 * 2**20}


def _layer_sequence(deepest: str) -> list[tuple[str, int, int]]:
    """(kind, block, channels) for each layer up to and including ``deepest``."""
    sequence = []
    for block, (channels, convs) in enumerate(zip(_BLOCK_CHANNELS, _CONVS_PER_BLOCK), start=1):
        for position in range(1, convs + 1):
            sequence.append((f"conv{block}_{position}", block, channels))
            sequence.append((f"relu{block}_{position}", block, channels))
        sequence.append((f"pool{block}", block + 1, channels))
    names = [name for name, _, _ in sequence]
    return sequence[: names.index(deepest) + 1]


def _deepest(request: StyleRequest) -> str:
    order = [name for name, _, _ in _layer_sequence("pool5")]
    return max(request.content_layers + request.style_layers, key=order.index)


def _weights_bytes(layers: list[tuple[str, int, int]]) -> int:
    total, in_channels = 0, 3
    for name, _, channels in layers:
        if name.startswith("conv"):
            total += (in_channels * 9 + 1) * channels * FLOAT
            in_channels = channels
    return total


def _training_bytes(layers: list[tuple[str, int, int]], pixels: float, max_pooling: bool, element: int) -> float:
    """What one forward and backward pass at ``pixels`` keeps alive at its peak, activations
    saved for backward taking ``element`` bytes each (2 under bf16)."""
    saved = 3 * pixels * element  # the preprocessed input, saved by conv1_1
    largest = 3 * pixels * FLOAT
    for name, block, channels in layers:
        elements = channels * pixels / 4 ** (block - 1)
        largest = max(largest, elements * FLOAT)
        if name.startswith(("relu", "pool")):
            saved += elements * element
        if name.startswith("pool") and max_pooling:
            saved += elements * INDEX
    # Backward holds an activation's gradient and its input's gradient at once; the loss adds a
    # squared-difference buffer the size of the layers it compares (in fp32, whatever the network's).
    return saved + 3 * largest


def _forward_bytes(layers: list[tuple[str, int, int]], pixels: float) -> float:
    """Peak of a no-grad forward pass: two consecutive activations."""
    sizes = [3 * pixels * FLOAT] + [channels * pixels / 4 ** (block - 1) * FLOAT for _, block, channels in layers]
    return max(a + b for a, b in itertools.pairwise(sizes))


def _content_aspect(request: StyleRequest, aspect: float | None) -> float:
    """``aspect`` if given, else the content's short side over its long side, from its header.

    1 (a square, the worst case) when the header cannot say, or the content is a file not read yet.
    """
    if aspect is not None:
        return aspect
    if not isinstance(request.content, bytes):
        return 1.0
    try:
        info = probe_image(request.content, max_pixels=request.max_input_pixels)
    except ImageError:
        return 1.0
    return min(info.width, info.height) / max(info.width, info.height)


def _peak_bytes(request: StyleRequest, size: int, aspect: float, device_type: str) -> int:
    layers = _layer_sequence(_deepest(request))
    pixels = float(size * size * aspect)
    image_floats = 3 * pixels
    optimiser = (2 * LBFGS_HISTORY + 6 if request.optimizer == "lbfgs" else 5) * image_floats * FLOAT
    style_pixels = pixels * request.style_scale**2
    styles = _forward_bytes(layers, style_pixels) + len(request.styles) * 3 * style_pixels * FLOAT
    element = 2 if device_type == "cuda" and BF16_ON_CUDA else FLOAT
    working = max(_training_bytes(layers, pixels, request.pooling == "max", element) + optimiser, styles)
    peak = (working + _weights_bytes(layers)) * FRAGMENTATION
    return int(peak + FIXED_OVERHEAD.get(device_type, FIXED_OVERHEAD["cpu"]))


def estimate_peak_bytes(
    request: StyleRequest, device_type: str = "cuda", content_aspect: float | None = None
) -> int:
    """Estimated peak memory in bytes of running ``request`` on a device of type 'cuda' or 'cpu'.

    ``content_aspect`` (short side over long side) spares reading the content's header; the
    executor pool always passes it, so nothing on its event loop ever opens an image.
    """
    size, _ = resolve_size_steps(request)
    return _peak_bytes(request, size, _content_aspect(request, content_aspect), device_type)


def max_fitting_size(
    request: StyleRequest, capacity_bytes: int, device_type: str = "cuda", content_aspect: float | None = None
) -> int:
    """The largest output long side whose estimate fits in ``capacity_bytes``; 0 if none does."""
    aspect = _content_aspect(request, content_aspect)  # read the header once, not at every step of the search
    low, high = MIN_SIZE, MAX_SIZE
    if _peak_bytes(request, low, aspect, device_type) > capacity_bytes:
        return 0
    while low < high:
        middle = (low + high + 1) // 2
        if _peak_bytes(request, middle, aspect, device_type) <= capacity_bytes:
            low = middle
        else:
            high = middle - 1
    return low
