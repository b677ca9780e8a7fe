"""The dependency floors in pyproject.toml admit no version that lacks what the code relies on."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import discord
import pytest
import torch
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

# package -> (the newest release without the feature, the feature, whether the installed package has it)
NEEDED = {
    "discord.py": (
        "2.5.2",
        "Interaction.filesize_limit from the interaction's attachment_size_limit, and enforce_nonce",
        lambda: "filesize_limit" in discord.Interaction.__slots__,
    ),
    "torch": ("2.4.1", "torch.OutOfMemoryError", lambda: hasattr(torch, "OutOfMemoryError")),
}


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(line).name: Requirement(line) for line in project["dependencies"]}


@pytest.mark.parametrize("package", sorted(NEEDED))
def test_the_floor_excludes_releases_without_the_feature(package: str) -> None:
    requirement = _requirements()[package]
    too_old, feature, installed_has_it = NEEDED[package]
    assert not requirement.specifier.contains(too_old), f"{requirement} allows {too_old}, which lacks {feature}"
    assert requirement.specifier.contains(metadata.version(package).split("+")[0])
    assert installed_has_it(), f"the installed {package} lacks {feature}"
