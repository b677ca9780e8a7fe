"""Command line: ``python -m nst_engine stylize --content A --style B --out OUT``.

A progress bar goes to stderr, the loss summary (or, with ``--json``, one JSON object) to
stdout. Every expected failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn, TextIO

from nst_engine.errors import EngineError
from nst_engine.presets import QUALITY_PRESETS, resolve_size_steps
from nst_engine.request import DEFAULT_TV_WEIGHT, LossSummary, Progress, StyleRequest

EXIT_USAGE = 2
EXIT_FAILED = 1
OUTPUT_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nst", description="Neural style transfer (Gatys et al.) on VGG19.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("stylize", help="paint a content image in the style of one or more style images")
    run.add_argument("--content", required=True, type=Path, help="content image (PNG, JPEG, WebP, GIF, BMP)")
    run.add_argument("--style", required=True, action="append", type=Path, help="style image; repeat to blend")
    run.add_argument(
        "--style-weight", action="append", type=float, help="blend weight of each --style, in order (default: equal)"
    )
    run.add_argument("--out", required=True, type=Path, help="output image: .png, .jpg or .webp")
    run.add_argument("--preset", choices=sorted(QUALITY_PRESETS), default="balanced", help="size and steps preset")
    run.add_argument("--size", type=int, help="long side of the output in pixels (overrides the preset)")
    run.add_argument("--steps", type=int, help="objective evaluations (overrides the preset)")
    run.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    run.add_argument("--init", choices=("content", "noise", "style"), default="content")
    run.add_argument("--seed", type=int, help="random seed (default: a random one, reported at the end)")
    run.add_argument(
        "--preserve-colors",
        nargs="?",
        const="luminance",
        choices=("luminance", "histogram"),
        help="keep the content's colours (default mode: luminance)",
    )
    run.add_argument("--style-scale", type=float, default=1.0, help="scale of the style's brush strokes")
    run.add_argument("--content-weight", type=float, default=1.0)
    run.add_argument("--style-strength", type=float, default=1.0, dest="style_strength", help="overall style weight")
    run.add_argument(
        "--style-loss",
        choices=("w2", "gram"),
        default=StyleRequest.style_loss,
        help="gram: Gatys et al.'s Gram matrices (default); w2: match the style's feature means and covariances",
    )
    run.add_argument(
        "--tv-weight", type=float, default=DEFAULT_TV_WEIGHT, help="total-variation smoothing weight (0 turns it off)"
    )
    run.add_argument("--pooling", choices=("max", "avg"), default=StyleRequest.pooling)
    run.add_argument(
        "--padding",
        choices=("replicate", "zeros"),
        default=StyleRequest.padding,
        help="border mode of VGG's first convolution",
    )
    run.add_argument(
        "--multiscale",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="coarse to fine (default: the preset's scales)",
    )
    run.add_argument("--weights", default="caffe", help="caffe (default), torchvision, or a .pth path")
    run.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    run.add_argument("--json", action="store_true", help="print one JSON object with the results")
    return parser


class ProgressBar:
    """A one-line bar on a text stream, redrawn in place."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.started = time.perf_counter()
        self.drawn = False

    def __call__(self, progress: Progress) -> None:
        filled = int(self.width * progress.iteration / progress.total)
        elapsed = time.perf_counter() - self.started
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(
            f"\r[{bar}] {progress.iteration}/{progress.total}  loss {progress.losses.total:.4g}  {elapsed:.1f}s"
        )
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EngineError(f"{what} {str(path)!r} does not exist.") from None
    except IsADirectoryError:
        raise EngineError(f"{what} {str(path)!r} is a directory, not an image.") from None
    except OSError as exc:
        raise EngineError(f"Cannot read {what.lower()} {str(path)!r}: {exc.strerror}.") from None


def _request(args: argparse.Namespace) -> StyleRequest:
    if args.style_weight is not None and len(args.style_weight) != len(args.style):
        raise EngineError(f"{len(args.style)} --style but {len(args.style_weight)} --style-weight; give one per style.")
    return StyleRequest(
        content=_read(args.content, "Content image"),
        styles=tuple(_read(path, "Style image") for path in args.style),
        style_blend=None if args.style_weight is None else tuple(args.style_weight),
        quality=args.preset,
        size=args.size,
        steps=args.steps,
        optimizer=args.optimizer,
        init=args.init,
        seed=args.seed,
        content_weight=args.content_weight,
        style_weight=args.style_strength,
        tv_weight=args.tv_weight,
        style_scale=args.style_scale,
        preserve_colors=args.preserve_colors or "none",
        pooling=args.pooling,
        padding=args.padding,
        style_loss=args.style_loss,
        multiscale=args.multiscale,
        weights=args.weights,
    )


def _loss_table(losses: LossSummary) -> str:
    rows = [f"{'':8} {'initial':>12} {'final':>12}"]
    for term in ("content", "style", "tv", "total"):
        rows.append(f"{term:8} {getattr(losses.initial, term):12.4g} {getattr(losses.final, term):12.4g}")
    return "\n".join(rows)


def stylize_command(args: argparse.Namespace) -> int:
    fmt = OUTPUT_FORMATS.get(args.out.suffix.lower())
    if fmt is None:
        raise EngineError(f"Cannot tell the output format from {str(args.out)!r}; end it in .png, .jpg or .webp.")
    if not args.out.parent.is_dir():
        raise EngineError(f"The output folder {str(args.out.parent)!r} does not exist.")
    request = _request(args)

    from nst_engine.imageio import encode_image
    from nst_engine.transfer import stylize

    _, steps = resolve_size_steps(request)
    bar = ProgressBar(sys.stderr)
    try:
        result = stylize(request, device=args.device, on_progress=bar, progress_every=max(1, steps // 100))
    finally:
        bar.close()
    try:
        args.out.write_bytes(encode_image(result.image, fmt))
    except OSError as exc:
        raise EngineError(f"Cannot write {str(args.out)!r}: {exc.strerror}.") from None
    if args.json:
        report = {
            "output": str(args.out),
            "losses": {
                "initial": asdict(result.losses.initial),
                "final": asdict(result.losses.final),
            },
            "evaluations": result.evaluations,
            "seconds": round(result.seconds, 3),
            "device": result.device,
            "width": result.width,
            "height": result.height,
            "seed": result.seed,
            "weights": result.weights,
        }
        print(json.dumps(report))
    else:
        print(_loss_table(result.losses))
        print(
            f"saved {args.out} ({result.width}x{result.height}) in {result.seconds:.1f}s on {result.device}, "
            f"{result.evaluations} evaluations, seed {result.seed}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nst`` and ``python -m nst_engine``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return stylize_command(args)
    except EngineError as exc:
        print(f"nst: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("nst: interrupted", file=sys.stderr)
        return 130
