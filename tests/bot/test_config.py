"""The config loader: defaults, the documented example, and a clear error for every mistake."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
from PIL import Image

from bot.config import Config, ConfigError, load_config, load_token, parse_config
from nst_engine.presets import QUALITY_PRESETS
from tests.hostile_files import png_16mp

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def _keys(cls: type, prefix: str = "") -> set[str]:
    hints = typing.get_type_hints(cls)
    keys = set()
    for spec in fields(cls):
        kind = hints[spec.name]
        if is_dataclass(kind):
            keys |= _keys(kind, f"{prefix}{spec.name}.")
        else:
            keys.add(prefix + spec.name)
    return keys


def _flatten(table: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in table.items():
        if isinstance(value, dict) and key != "extra":
            keys |= _flatten(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_example_documents_every_key_and_matches_the_defaults():
    raw = tomllib.loads(EXAMPLE.read_text())
    assert _flatten(raw) == _keys(Config)
    assert parse_config(raw) == Config()


def test_example_loads_from_file_with_paths_relative_to_it():
    config = load_config(EXAMPLE)
    assert config.storage.database == str(EXAMPLE.parent / "data/nst.sqlite3")
    assert config.storage.data_dir == str(EXAMPLE.parent / "data")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"limits": {"cooldown": 5}}, "limits.cooldown: unknown key"),
        ({"nonsense": {}}, "nonsense: unknown key"),
        ({"limits": {"cooldown_s": "soon"}}, "limits.cooldown_s: must be a number"),
        ({"limits": {"cooldown_s": -1}}, "limits.cooldown_s: must be 0 or more"),
        ({"limits": {"max_jobs_per_user": 1.5}}, "limits.max_jobs_per_user: must be a whole number"),
        ({"limits": {"max_jobs_per_user": True}}, "limits.max_jobs_per_user: must be a whole number"),
        ({"limits": {"queue_size": 0}}, "limits.queue_size: must be at least 1"),
        ({"limits": {"min_size": 900, "max_size": 800}}, "limits.min_size: must not exceed"),
        ({"limits": {"min_size": 16}}, "limits.min_size: must be at least 32"),
        ({"http": {"enabled": "yes"}}, "http.enabled: must be true or false"),
        ({"http": {"port": 70000}}, "http.port: must be between"),
        ({"discord": {"api_base_url": "discord.com/api"}}, "discord.api_base_url: must be a https or http URL"),
        ({"discord": {"gateway_url": "https://gateway.discord.gg"}}, "discord.gateway_url: must be a wss or ws URL"),
        ({"discord": {"guild_allowlist": "123"}}, "discord.guild_allowlist: must be a list"),
        ({"discord": {"guild_allowlist": ["123"]}}, "discord.guild_allowlist[0]: must be a whole number"),
        ({"downloads": {"allowed_hosts": ["https://cdn.discordapp.com"]}}, "downloads.allowed_hosts: "),
        ({"downloads": {"allowed_hosts": ["CDN.discordapp.com"]}}, "must be a bare, lower-case host name"),
        ({"downloads": {"allowed_schemes": ["ftp"]}}, "downloads.allowed_schemes: 'ftp'"),
        ({"pool": {"devices": ["gpu0"]}}, "pool.devices: 'gpu0'"),
        ({"pool": {"backend": "k8s"}}, "pool.backend: must be one of 'local', 'ray'"),
        ({"pool": {"ray": {"address": "http://head"}}}, "pool.ray.address: must be empty"),
        ({"pool": {"ray": {"address": "head:port"}}}, "pool.ray.address: must be empty"),
        ({"pool": {"ray": {"address": "ray://head:10001"}}}, "pool.ray.address: Ray Client (ray://) addresses are not"),
        ({"pool": {"ray": {"workers_per_gpu": 0}}}, "pool.ray.workers_per_gpu: must be at least 1"),
        ({"pool": {"ray": {"cpu_workers": -2}}}, "pool.ray.cpu_workers: must be at least -1"),
        ({"pool": {"ray": {"namespace": ""}}}, "pool.ray.namespace: must not be empty"),
        ({"pool": {"ray": {"port": 6379}}}, "pool.ray.port: unknown key"),
        ({"quality": {"default": "ultra"}}, "quality.default: must be one of"),
        ({"quality": {"style_loss": "l2"}}, "quality.style_loss: must be one of 'gram', 'w2'"),
        ({"quality": {"fast": {"size": 2048}}}, "quality.fast.size: 2048 is larger than limits.max_size"),
        ({"quality": {"fast": {"colour": 1}}}, "quality.fast.colour: unknown key"),
        ({"quality": "fast"}, "quality: must be a table"),
        ({"presets": {"enabled": ["mona_lisa"]}}, "presets.enabled: no bundled preset named 'mona_lisa'"),
        ({"presets": {"extra": {"mine": "/does/not/exist.jpg"}}}, "presets.extra.mine: file"),
        ({"logging": {"level": "LOUD"}}, "logging.level: must be one of"),
        ({"discord": {"token": "abc"}}, "discord.token: the token is never read from the config file"),
        ({"discord": {"shards": "many"}}, 'discord.shards: must be 0 (no sharding), "auto"'),
        ({"discord": {"shards": -2}}, 'discord.shards: must be 0 (no sharding), "auto"'),
        ({"discord": {"shards": 1.5}}, "discord.shards: must be a whole number or a string"),
        ({"delivery": {"max_rate_limit_wait_s": 5}}, "delivery.max_rate_limit_wait_s: must be at least 30"),
    ],
)
def test_bad_keys_and_values_are_named(raw, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert message in str(caught.value)


def test_a_ray_backend_is_configured_in_its_own_table():
    config = parse_config(
        {"pool": {"backend": "ray", "ray": {"address": "head.lan:6379", "workers_per_gpu": 2, "cpu_workers": 0}}}
    )
    assert config.pool.backend == "ray"
    assert (config.pool.ray.address, config.pool.ray.workers_per_gpu, config.pool.ray.cpu_workers) == (
        "head.lan:6379",
        2,
        0,
    )
    assert parse_config({"pool": {"ray": {"address": "10.0.0.2:6379"}}}).pool.ray.address == "10.0.0.2:6379"


def test_the_token_value_never_appears_in_the_error():
    with pytest.raises(ConfigError) as caught:
        parse_config({"discord": {"token": "super-secret-token"}})
    assert "super-secret-token" not in str(caught.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[limits\ncooldown_s = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_quality_zero_takes_the_engine_preset_and_values_override():
    config = parse_config({"quality": {"fast": {"size": 48, "steps": 3}}})
    assert (config.quality.preset("fast").size, config.quality.preset("fast").steps) == (48, 3)
    balanced = QUALITY_PRESETS["balanced"]
    assert (config.quality.preset("balanced").size, config.quality.preset("balanced").steps) == (
        balanced.size,
        balanced.steps,
    )


def test_extra_presets_resolve_relative_to_the_config(tmp_path):
    Image.new("RGB", (32, 24), (10, 20, 30)).save(tmp_path / "mine.jpg")
    path = tmp_path / "config.toml"
    path.write_text('[presets.extra]\nmine = "mine.jpg"\n')
    assert load_config(path).presets.extra == {"mine": str(tmp_path / "mine.jpg")}


def test_an_extra_preset_that_is_not_a_usable_image_is_refused_at_start(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are my notes, not a painting")
    (tmp_path / "huge.png").write_bytes(png_16mp("LA"))
    path = tmp_path / "config.toml"
    path.write_text('[downloads]\nmax_pixels = 1000000\n[presets.extra]\nnotes = "notes.jpg"\n')
    with pytest.raises(ConfigError, match=r"presets\.extra\.notes: .*notes\.jpg.* not an image I can use"):
        load_config(path)
    path.write_text('[downloads]\nmax_pixels = 1000000\n[presets.extra]\nhuge = "huge.png"\n')
    with pytest.raises(ConfigError, match=r"presets\.extra\.huge: .*megapixels"):
        load_config(path)


def test_token_comes_from_env_then_env_file_then_config_file(tmp_path):
    file_a = tmp_path / "a"
    file_a.write_text("token-from-env-file\n")
    file_b = tmp_path / "b"
    file_b.write_text("token-from-config-file")
    config = parse_config({"discord": {"token_file": str(file_b)}})
    assert load_token(config, {"DISCORD_TOKEN": " t1 ", "DISCORD_TOKEN_FILE": str(file_a)}) == "t1"
    assert load_token(config, {"DISCORD_TOKEN_FILE": str(file_a)}) == "token-from-env-file"
    assert load_token(config, {}) == "token-from-config-file"


def test_token_problems_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="no Discord token"):
        load_token(Config(), {})
    with pytest.raises(ConfigError, match="DISCORD_TOKEN_FILE: cannot read"):
        load_token(Config(), {"DISCORD_TOKEN_FILE": str(tmp_path / "missing")})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_token(Config(), {"DISCORD_TOKEN_FILE": str(empty)})


def _run_bot_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_the_command_line_names_the_bad_key_and_exits_2(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("[limits]\ncooldown_s = -5\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("DISCORD_TOKEN")}
    result = _run_bot_cli("--config", str(bad), env=env)
    assert result.returncode == 2
    assert "limits.cooldown_s: must be 0 or more (got -5)" in result.stderr

    bad.write_text("[limits]\ncooldown_s = 5\n")
    result = _run_bot_cli("--config", str(bad), "--check", env=env)
    assert result.returncode == 2 and "no Discord token" in result.stderr

    env["DISCORD_TOKEN"] = "secret-token-value"
    result = _run_bot_cli("--config", str(bad), "--check", env=env)
    assert result.returncode == 0, result.stderr
    assert "secret-token-value" not in result.stdout + result.stderr


def test_style_loss_reaches_the_engine_request():
    from bot.jobs import JobParams

    config = parse_config({"quality": {"style_loss": "w2"}})
    assert config.quality.style_loss == "w2" and parse_config({}).quality.style_loss == "gram"
    params = JobParams(quality="fast", size=64, steps=3)
    request = params.to_request(b"c", b"s", weights="caffe", max_input_pixels=10, style_loss=config.quality.style_loss)
    assert request.style_loss == "w2"
