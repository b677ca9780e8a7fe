"""Neural style transfer (Gatys et al.) on VGG19, as a library and a CLI.

Importing the package is cheap: ``stylize`` and ``load_vgg19`` pull in torch only when first
used, so callers that need just the request types or image I/O stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nst_engine.errors import EngineError
from nst_engine.request import LossSummary, LossTerms, Progress, StyleRequest, StyleResult

if TYPE_CHECKING:
    from nst_engine.transfer import stylize
    from nst_engine.vgg import load_vgg19

__all__ = [
    "EngineError",
    "LossSummary",
    "LossTerms",
    "Progress",
    "StyleRequest",
    "StyleResult",
    "load_vgg19",
    "stylize",
]

_LAZY = {"stylize": "nst_engine.transfer", "load_vgg19": "nst_engine.vgg"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nst_engine' has no attribute {name!r}")
