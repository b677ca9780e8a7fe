"""The command line, end to end with the real caffe weights at 64 px."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from nst_engine.cli import main

from .conftest import brush_strokes, landscape, png_bytes


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "content.png").write_bytes(png_bytes(landscape(96, 72)))
    (folder / "style.png").write_bytes(png_bytes(brush_strokes()))
    return folder


def test_stylize_json_end_to_end(images):
    out = images / "out.png"
    completed = subprocess.run(
        [
            sys.executable, "-m", "nst_engine", "stylize",
            "--content", str(images / "content.png"), "--style", str(images / "style.png"),
            "--out", str(out), "--size", "64", "--steps", "5", "--seed", "3", "--device", "cpu", "--json",
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["evaluations"] == 5
    assert (report["width"], report["height"]) == (64, 48)
    assert report["seed"] == 3 and report["device"] == "cpu" and report["weights"] == "caffe"
    assert report["seconds"] > 0
    for when in ("initial", "final"):
        assert set(report["losses"][when]) == {"content", "style", "tv", "total"}
    assert report["losses"]["final"]["style"] < report["losses"]["initial"]["style"]
    assert "5/5" in completed.stderr  # the progress bar reached the end
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (64, 48)


def test_stylize_summary_and_jpeg_output(images, capsys):
    out = images / "out.jpg"
    status = main(
        [
            "stylize", "--content", str(images / "content.png"),
            "--style", str(images / "style.png"), "--style", str(images / "content.png"),
            "--style-weight", "3", "--style-weight", "1",
            "--out", str(out), "--size", "48", "--steps", "2", "--preserve-colors", "--device", "cpu",
        ]
    )  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "initial" in printed and "final" in printed and "saved" in printed and "seed" in printed
    with Image.open(out) as image:
        assert image.format == "JPEG" and image.size == (48, 36)


@pytest.mark.parametrize(
    ("overrides", "extra", "message"),
    [
        ({"--content": "missing.png"}, [], "does not exist"),
        ({"--size": "5"}, [], "size"),
        ({"--content": "{folder}/notes.txt"}, [], "not an image"),
        ({"--out": "{folder}/out.tiff"}, [], "output format"),
        ({"--out": "{folder}/no/such/dir/out.png"}, [], "folder"),
        ({}, ["--style-weight", "1", "--style-weight", "2"], "--style-weight"),
        ({"--weights": "{folder}/none.pth"}, [], "does not exist"),
    ],
    ids=["missing", "size", "text", "format", "folder", "blend", "weights"],
)
def test_bad_input_is_one_line_and_nonzero(images, capsys, overrides, extra, message):
    (images / "notes.txt").write_text("not an image")
    options = {
        "--content": str(images / "content.png"),
        "--style": str(images / "style.png"),
        "--out": str(images / "x.png"),
        "--size": "32",
        "--steps": "1",
        "--device": "cpu",
    }
    options.update({flag: value.format(folder=images) for flag, value in overrides.items()})
    argv = ["stylize", *(item for pair in options.items() for item in pair), *extra]
    status = main(argv)
    error = capsys.readouterr().err
    assert status == 1
    lines = [line for line in error.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nst: error:"), error
    assert message in lines[0]


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["stylize", "--content", "a.png"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_torchvision_weights_are_read_from_torch_s_cache_without_a_download(images, tmp_path):
    """`--weights torchvision` with the file already in torch's cache: loaded from there, no network needed."""
    import torch
    from torchvision.models import vgg19

    from nst_engine.vgg import TORCHVISION_URL

    torch.manual_seed(0)
    features = vgg19(weights=None).features
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({f"features.{key}": value for key, value in features.state_dict().items()},
               cache / TORCHVISION_URL.rsplit("/", 1)[1])
    # Any download would go through a proxy that is not there, and fail.
    offline = {"TORCH_HOME": str(tmp_path / "torch"), "HTTPS_PROXY": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    command = [
        sys.executable, "-m", "nst_engine", "stylize", "--weights", "torchvision",
        "--content", str(images / "content.png"), "--style", str(images / "style.png"),
        "--out", str(tmp_path / "out.png"), "--size", "32", "--steps", "2", "--device", "cpu", "--json",
    ]  # fmt: skip
    env = {**os.environ, **offline}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["weights"] == "torchvision"

    # The same command without the cached file needs the network, which this test does not have.
    env["TORCH_HOME"] = str(tmp_path / "empty")
    uncached = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert uncached.returncode != 0 and "Could not download torchvision's VGG19 weights" in uncached.stderr


def test_style_loss_padding_and_tv_options_reach_the_request(images, monkeypatch):
    from nst_engine import cli

    seen = []
    monkeypatch.setattr(cli, "_request", lambda args, _request=cli._request: seen.append(_request(args)) or seen[-1])
    argv = [
        "stylize", "--content", str(images / "content.png"), "--style", str(images / "style.png"),
        "--out", str(images / "w2.png"), "--size", "32", "--steps", "2", "--device", "cpu",
        "--style-loss", "w2", "--padding", "zeros", "--tv-weight", "5", "--pooling", "avg",
    ]  # fmt: skip
    assert main(argv) == 0
    (request,) = seen
    assert (request.style_loss, request.padding, request.tv_weight, request.pooling) == ("w2", "zeros", 5.0, "avg")


def test_defaults_are_the_engine_s(images, monkeypatch):
    from nst_engine import cli
    from nst_engine.request import StyleRequest

    args = cli.build_parser().parse_args(
        ["stylize", "--content", str(images / "content.png"), "--style", str(images / "style.png"), "--out", "x.png"]
    )
    request = cli._request(args)
    defaults = StyleRequest(content=b"", styles=(b"",))
    for name in ("style_loss", "padding", "tv_weight", "pooling", "multiscale"):
        assert getattr(request, name) == getattr(defaults, name), name


@pytest.mark.parametrize(("option", "value"), [("--style-loss", "l2"), ("--padding", "reflect")])
def test_bad_choice_is_a_usage_error_naming_the_option(capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["stylize", "--content", "a.png", "--style", "b.png", "--out", "c.png", option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert option in error and repr(value) in error
