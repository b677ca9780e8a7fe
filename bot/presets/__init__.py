"""Public-domain paintings bundled as style presets, and the catalogue users pick from.

The JPEG files next to this module are the paintings resized to a long side of 512 px:
enough for style transfer at Discord sizes while keeping the package small.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Preset:
    """A style image users can name instead of attaching one."""

    key: str
    title: str
    credit: str
    path: Path

    @property
    def label(self) -> str:
        """How the preset is shown in autocomplete and summaries."""
        return f"{self.title} — {self.credit}" if self.credit else self.title

    @cached_property
    def data(self) -> bytes:
        return self.path.read_bytes()


BUNDLED: dict[str, Preset] = {
    preset.key: preset
    for preset in (
        Preset("starry_night", "The Starry Night", "Vincent van Gogh, 1889", _HERE / "starry_night.jpg"),
        Preset("the_scream", "The Scream", "Edvard Munch, 1893", _HERE / "the_scream.jpg"),
        Preset("shipwreck", "The Shipwreck", "J. M. W. Turner, 1805", _HERE / "shipwreck.jpg"),
    )
}


class PresetCatalogue:
    """The presets one bot offers: the enabled bundled ones plus the operator's own paintings."""

    def __init__(self, enabled: list[str], extra: dict[str, str]) -> None:
        self._presets: dict[str, Preset] = {key: BUNDLED[key] for key in enabled}
        for key, path in extra.items():
            self._presets[key] = Preset(key, key.replace("_", " ").title(), "", Path(path))

    def get(self, key: str) -> Preset | None:
        return self._presets.get(key)

    def __iter__(self):
        return iter(self._presets.values())

    def __len__(self) -> int:
        return len(self._presets)

    def search(self, text: str, limit: int = 25) -> list[Preset]:
        """Presets whose key or label contains ``text`` (case-insensitive), for autocomplete."""
        needle = text.strip().lower()
        found = [p for p in self._presets.values() if needle in p.key.lower() or needle in p.label.lower()]
        return found[:limit]
