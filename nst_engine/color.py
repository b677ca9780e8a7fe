"""Colour preservation (Gatys et al., "Preserving Color in Neural Artistic Style Transfer").

Two ways to keep the content's colours: transfer luminance only and take the chroma from the
content afterwards, or recolour the style images to the content's colour mean and covariance
before the transfer. Images are RGB [0, 1] tensors of shape (1, 3, H, W).
"""

from __future__ import annotations

import torch

# YIQ keeps luminance (Y) separate from chroma (I, Q) with a linear, invertible map.
_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ]
)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(image), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    return _apply(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return _apply(torch.linalg.inv(_RGB_TO_YIQ.double()).float(), image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """The luminance as a grey RGB image."""
    y = rgb_to_yiq(image)[:, :1]
    return y.expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Grey style image whose luminance has the content's mean and standard deviation."""
    style_y = rgb_to_yiq(style)[:, :1]
    content_y = rgb_to_yiq(content)[:, :1]
    matched = (style_y - style_y.mean()) / (style_y.std() + 1e-5) * content_y.std() + content_y.mean()
    return matched.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def combine_luminance(stylised: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylised image's luminance with the content's chroma."""
    result = rgb_to_yiq(content)
    result[:, :1] = rgb_to_yiq(stylised)[:, :1]
    return yiq_to_rgb(result).clamp(0, 1)


def _covariance_sqrt(pixels: torch.Tensor, inverse: bool) -> torch.Tensor:
    """(Inverse) square root of the 3x3 colour covariance of (3, P) pixels, via a symmetric eigendecomposition."""
    centred = pixels - pixels.mean(dim=1, keepdim=True)
    covariance = centred @ centred.T / pixels.shape[1] + 1e-5 * torch.eye(3, dtype=pixels.dtype, device=pixels.device)
    values, vectors = torch.linalg.eigh(covariance)
    values = values.clamp_min(1e-8)
    power = values.rsqrt() if inverse else values.sqrt()
    return vectors @ torch.diag(power) @ vectors.T


def match_color(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Recolour ``style`` so its pixels have the content's colour mean and covariance."""
    source = style.reshape(3, -1).double()
    target = content.reshape(3, -1).double()
    transform = _covariance_sqrt(target, inverse=False) @ _covariance_sqrt(source, inverse=True)
    matched = transform @ (source - source.mean(dim=1, keepdim=True)) + target.mean(dim=1, keepdim=True)
    return matched.float().reshape(style.shape).clamp(0, 1)
