"""The bot's settings: one typed object loaded from TOML, checked before anything starts.

Every key lives in a frozen dataclass below; ``config.example.toml`` documents each one.
Loading rejects unknown keys and bad values with an error that names the key, so a typo
fails loudly at start instead of silently falling back to a default.  The Discord token is
deliberately absent: it comes from the environment or a file (:func:`load_token`).
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yarl

from bot.presets import BUNDLED
from nst_engine.errors import ImageError
from nst_engine.imageio import decode_image
from nst_engine.presets import MIN_SIZE as ENGINE_MIN_SIZE
from nst_engine.presets import QUALITY_PRESETS

QUALITIES: tuple[str, ...] = ("fast", "balanced", "high")

Check = Callable[[Any], "str | None"]


class ConfigError(Exception):
    """A configuration problem, worded for the person starting the bot."""


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _at_least(minimum: int) -> Check:
    return lambda value: None if value >= minimum else f"must be at least {minimum}"


def _between(low: float, high: float) -> Check:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def _one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(map(repr, choices))}"


def _each(check: Check) -> Check:
    def run(values: list) -> str | None:
        for value in values:
            problem = check(value)
            if problem:
                return f"{value!r}: {problem}"
        return None

    return run


def _url(*schemes: str) -> Check:
    def run(value: str) -> str | None:
        url = yarl.URL(value)
        if url.scheme not in schemes or not url.host:
            return f"must be a {' or '.join(schemes)} URL with a host"
        return None

    return run


def _device(value: str) -> str | None:
    if value == "cpu" or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return "must be 'cpu', 'cuda' or 'cuda:N'"


def _ray_address(value: str) -> str | None:
    if value in ("", "auto"):
        return None
    if value.startswith("ray://"):
        # Ray Client cannot stream a generator's results, and progress streams that way.
        return "Ray Client (ray://) addresses are not supported; give the head's host:6379 (the bot joins as a driver)"
    host, _, port = value.rpartition(":")
    if host and "/" not in host and port.isdigit() and 0 < int(port) < 65536:
        return None
    return "must be empty (a private Ray in the bot), 'auto' or the head's 'host:port'"


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def _host_name(value: str) -> str | None:
    # Lower case only, because downloads compare the URL's host lower-cased.
    return (
        None
        if value and "/" not in value and ":" not in value and value == value.lower()
        else "must be a bare, lower-case host name like 'cdn.discordapp.com'"
    )


def _shards(value: int | str) -> str | None:
    if value == "auto" or (isinstance(value, int) and value >= 0):
        return None
    return 'must be 0 (no sharding), "auto" (as many as Discord recommends) or a number of shards'


def _checked(default: Any, check: Check | None = None, *, factory: bool = False) -> Any:
    """A dataclass field whose value the loader passes through ``check`` (which names the problem)."""
    metadata = {"check": check} if check else {}
    if factory:
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DiscordConfig:
    token_file: str = ""
    api_base_url: str = _checked("https://discord.com/api/v10", _url("https", "http"))
    gateway_url: str = _checked("wss://gateway.discord.gg/", _url("wss", "ws"))
    sync_commands: bool = True
    dev_guild_id: int = _checked(0, _non_negative)
    guild_allowlist: list[int] = _checked(list, _each(_positive), factory=True)
    shards: int | str = _checked(0, _shards)


@dataclass(frozen=True)
class DownloadConfig:
    allowed_hosts: list[str] = _checked(
        lambda: ["cdn.discordapp.com", "media.discordapp.net"], _each(_host_name), factory=True
    )
    allowed_schemes: list[str] = _checked(lambda: ["https"], _each(_one_of("https", "http")), factory=True)
    allow_explicit_port: bool = False
    content_types: list[str] = field(
        default_factory=lambda: ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"]
    )
    max_bytes: int = _checked(20 * 1024 * 1024, _at_least(1024))
    timeout_s: float = _checked(20.0, _positive)
    max_pixels: int = _checked(16_000_000, _at_least(1))
    max_concurrent: int = _checked(4, _at_least(1))
    max_concurrent_decodes: int = _checked(2, _at_least(1))


@dataclass(frozen=True)
class RaySettings:
    address: str = _checked("", _ray_address)
    workers_per_gpu: int = _checked(1, _at_least(1))
    cpu_workers: int = _checked(-1, _at_least(-1))
    namespace: str = _checked("nst-bot", _not_empty)


@dataclass(frozen=True)
class PoolSettings:
    backend: str = _checked("local", _one_of("local", "ray"))
    ray: RaySettings = field(default_factory=RaySettings)
    devices: list[str] = _checked(list, _each(_device), factory=True)
    workers_per_device: int = _checked(1, _at_least(1))
    job_timeout_s: float = _checked(600.0, _positive)
    preview_interval_s: float = _checked(2.0, _positive)
    heartbeat_timeout_s: float = _checked(30.0, _positive)
    weights: str = "caffe"
    cpu_threads: int = _checked(0, _non_negative)
    progress_every: int = _checked(10, _at_least(1))
    max_batch: int = _checked(1, _at_least(1))
    shape_multiple: int = _checked(32, _between(1, 64))


@dataclass(frozen=True)
class LimitsConfig:
    cooldown_s: float = _checked(30.0, _non_negative)
    max_jobs_per_user: int = _checked(2, _at_least(1))
    queue_size: int = _checked(32, _at_least(1))
    # Below the engine's smallest size every job would fail after queueing (and Discord's size option offers it).
    max_size: int = _checked(1024, _at_least(ENGINE_MIN_SIZE))
    min_size: int = _checked(64, _at_least(ENGINE_MIN_SIZE))


@dataclass(frozen=True)
class QualityPreset:
    """Output long side and evaluation budget; 0 takes the engine's value for that quality."""

    size: int = _checked(0, _non_negative)
    steps: int = _checked(0, _non_negative)


@dataclass(frozen=True)
class QualityConfig:
    fast: QualityPreset = field(default_factory=QualityPreset)
    balanced: QualityPreset = field(default_factory=QualityPreset)
    high: QualityPreset = field(default_factory=QualityPreset)
    default: str = _checked("balanced", _one_of(*QUALITIES))
    style_loss: str = _checked("gram", _one_of("gram", "w2"))

    def preset(self, quality: str) -> QualityPreset:
        """The size and steps of ``quality`` ("fast", "balanced" or "high"), engine defaults filled in."""
        configured: QualityPreset = getattr(self, quality)
        engine = QUALITY_PRESETS[quality]
        return QualityPreset(size=configured.size or engine.size, steps=configured.steps or engine.steps)


@dataclass(frozen=True)
class PresetsConfig:
    enabled: list[str] = field(default_factory=lambda: ["starry_night", "the_scream", "shipwreck"])
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProgressConfig:
    edit_interval_s: float = _checked(3.0, _positive)
    preview_size: int = _checked(160, _at_least(16))
    queue_edit_interval_s: float = _checked(5.0, _positive)


@dataclass(frozen=True)
class StorageConfig:
    database: str = "data/nst.sqlite3"
    data_dir: str = "data"
    retention_hours: float = _checked(168.0, _positive)
    prune_interval_s: float = _checked(3600.0, _positive)
    min_free_bytes: int = _checked(1024**3, _non_negative)
    max_bytes_per_user: int = _checked(256 * 1024**2, _non_negative)
    orphan_check_s: float = _checked(60.0, _positive)


@dataclass(frozen=True)
class DeliveryConfig:
    attempts: int = _checked(3, _at_least(1))
    backoff_s: float = _checked(2.0, _non_negative)
    # discord.py refuses a smaller max_ratelimit_timeout than 30 s.
    max_rate_limit_wait_s: float = _checked(30.0, _at_least(30))
    attempt_timeout_s: float = _checked(120.0, _positive)
    token_margin_s: float = _checked(60.0, _non_negative)
    token_ttl_s: float = _checked(900.0, _positive)


@dataclass(frozen=True)
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = _checked(8080, _between(0, 65535))


@dataclass(frozen=True)
class ShutdownConfig:
    grace_s: float = _checked(20.0, _non_negative)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _checked("INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass(frozen=True)
class Config:
    """Everything the bot can be told, section by section (``[discord]``, ``[limits]``...)."""

    discord: DiscordConfig = field(default_factory=DiscordConfig)
    downloads: DownloadConfig = field(default_factory=DownloadConfig)
    pool: PoolSettings = field(default_factory=PoolSettings)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    presets: PresetsConfig = field(default_factory=PresetsConfig)
    progress: ProgressConfig = field(default_factory=ProgressConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read ``path`` (TOML) into a :class:`Config`; raise :class:`ConfigError` naming the bad key."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, base_dir=path.parent)


def parse_config(raw: dict[str, Any], *, base_dir: Path | None = None) -> Config:
    """Build a :class:`Config` from an already-parsed TOML table.

    Relative paths (storage, token file, extra presets) are taken relative to ``base_dir``,
    the folder of the config file, so the bot behaves the same whatever its working directory.
    """
    if "token" in raw.get("discord", {}):
        raise ConfigError(
            "discord.token: the token is never read from the config file; "
            "set the DISCORD_TOKEN environment variable, or DISCORD_TOKEN_FILE / discord.token_file to a file holding it"
        )
    config = _build(Config, raw, "")
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    _check_cross_field(config)
    return config


def _build(cls: type, table: Any, prefix: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: must be a table")
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key (known keys here: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, spec in known.items():
        if name not in table:
            continue
        key = prefix + name
        kind = hints[name]
        if is_dataclass(kind):
            values[name] = _build(kind, table[name], key + ".")
            continue
        value = _coerce(table[name], kind, key)
        check = spec.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{key}: {problem} (got {table[name]!r})")
        values[name] = value
    return cls(**values)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is list:
        (item_kind,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be a list (got {value!r})")
        return [_coerce(item, item_kind, f"{key}[{index}]") for index, item in enumerate(value)]
    if origin is dict:
        _, item_kind = typing.get_args(kind)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a table (got {value!r})")
        return {name: _coerce(item, item_kind, f"{key}.{name}") for name, item in value.items()}
    if origin in (typing.Union, types.UnionType):
        if set(typing.get_args(kind)) != {int, str}:
            raise TypeError(f"unsupported config type for {key}")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key}: must be a whole number or a string (got {value!r})")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false (got {value!r})")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be a whole number (got {value!r})")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: must be a number (got {value!r})")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string (got {value!r})")
        return value
    raise TypeError(f"unsupported config type {kind!r} for {key}")


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    def resolve(value: str) -> str:
        return str(base_dir / value) if value and not Path(value).is_absolute() else value

    storage = replace(
        config.storage, database=resolve(config.storage.database), data_dir=resolve(config.storage.data_dir)
    )
    discord = replace(config.discord, token_file=resolve(config.discord.token_file))
    presets = replace(config.presets, extra={name: resolve(path) for name, path in config.presets.extra.items()})
    return replace(config, storage=storage, discord=discord, presets=presets)


def _check_cross_field(config: Config) -> None:
    limits = config.limits
    if limits.min_size > limits.max_size:
        raise ConfigError(f"limits.min_size: must not exceed limits.max_size ({limits.max_size})")
    for quality in QUALITIES:
        size = config.quality.preset(quality).size
        if size > limits.max_size:
            raise ConfigError(f"quality.{quality}.size: {size} is larger than limits.max_size ({limits.max_size})")
    for name in config.presets.enabled:
        if name not in BUNDLED:
            raise ConfigError(
                f"presets.enabled: no bundled preset named {name!r} (bundled: {', '.join(sorted(BUNDLED))})"
            )
    for name, path in config.presets.extra.items():
        if name in BUNDLED:
            raise ConfigError(f"presets.extra.{name}: clashes with the bundled preset of that name")
        if not Path(path).is_file():
            raise ConfigError(f"presets.extra.{name}: file {path!r} does not exist")
        try:
            decode_image(Path(path), max_pixels=config.downloads.max_pixels)
        except ImageError as exc:
            raise ConfigError(f"presets.extra.{name}: {path!r} is not an image I can use as a style: {exc}") from None


def load_token(config: Config, environ: typing.Mapping[str, str] = os.environ) -> str:
    """The bot token: env ``DISCORD_TOKEN``, else the file named by ``DISCORD_TOKEN_FILE`` or ``discord.token_file``."""
    token = environ.get("DISCORD_TOKEN", "").strip()
    if token:
        return token
    source = environ.get("DISCORD_TOKEN_FILE", "").strip()
    key = "DISCORD_TOKEN_FILE"
    if not source:
        source, key = config.discord.token_file, "discord.token_file"
    if not source:
        raise ConfigError(
            "no Discord token: set the DISCORD_TOKEN environment variable, "
            "or DISCORD_TOKEN_FILE (or discord.token_file) to a file holding it"
        )
    try:
        token = Path(source).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read the token file {source!r}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"{key}: the token file {source!r} is empty")
    return token
