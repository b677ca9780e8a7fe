"""The compose file for a GPU worker node joins Ray the way the README tells people to join by hand."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO_ROOT

WORKER = yaml.safe_load((REPO_ROOT / "compose.ray-worker.yaml").read_text(encoding="utf-8"))["services"]["ray-worker"]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def readme_join_flags() -> set[str]:
    """The flags of the README's `ray start --address=...` command for a GPU host."""
    command = re.search(r"ray start --address=BOT_HOST:6379 (.*?)\n```", README, re.S)
    assert command, "the README shows how a GPU host joins"
    return set(command.group(1).replace("\\\n", " ").split())


def test_the_worker_node_uses_the_readme_s_fixed_ports_and_the_bot_s_image() -> None:
    assert WORKER["entrypoint"] == ["ray"]
    assert WORKER["command"][:3] == ["start", "--address=${RAY_HEAD:?set RAY_HEAD to the head's host:6379}", "--block"]
    assert set(WORKER["command"][3:]) == readme_join_flags()
    assert WORKER["build"] == "." and WORKER["image"] == "nst-bot:latest"
    assert WORKER["network_mode"] == "host"


def test_the_worker_node_authenticates_with_the_cluster_token_from_a_secret() -> None:
    assert WORKER["environment"]["RAY_AUTH_MODE"] == "token"
    assert WORKER["environment"]["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token"
    assert WORKER["secrets"] == ["ray_auth_token"]
    (device,) = WORKER["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["count"] == "all"
