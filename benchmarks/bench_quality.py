"""Benchmark: how good the engine's pictures are, on a fixed evaluator and five real pairs.

Runs ``nst_engine.stylize`` at a quality preset on Tübingen x The Starry Night, The Scream and
The Shipwreck, and Golden Gate x The Starry Night and The Scream, then scores every result
with an evaluator that does not depend on the engine's settings, so its figures stay
comparable when the engine's defaults change:

- style: the relative Gram distance ``||G(F) - G(S)|| / ||G(S)||`` (Frobenius norms,
  ``G(F) = F F^T / (h * w)``) averaged with equal weights over relu1_1 ... relu5_1 of VGG19
  with the original (Caffe) weights, zero padding and max pooling, the style image resized to
  the result's pixel count;
- content: the relative distance ``||F - P|| / ||P||`` at relu4_2, the photo resized to the
  result's size;
- chroma noise: the mean absolute 4-neighbour Laplacian of the Cb and Cr channels (0-255) of
  the image resized to a 256 px long side; the speckle of unrelated colours raises it;
- luma noise: the same on Y;
- the engine's evaluations and wall seconds.

It prints one table row per pair and writes a contact sheet PNG (content | style | result per
pair, the scores under the result).

Usage: python benchmarks/bench_quality.py [--preset fast] [--images ../shared/images]
       [--sheet quality_sheet.png] [--device cpu] [--set field=value ...] [--json FILE]
       [--baseline DIR]

``--set`` changes a StyleRequest field for every pair (for example ``--set tv_weight=0.5``),
to compare settings without editing the engine.

``--baseline DIR`` compares with another checkout of this project (an older engine, for
example ``git worktree add ../before <commit>``): each pair runs on that checkout's engine and
then on this one, in turn, both through their own command line (``python -m nst_engine
stylize --preset P --seed S``), so that drifting machine load falls on both alike; the table
shows each score before -> after with the ratio, and the seconds are each engine's own
``stylize`` time. The contact sheet then has a before and an after column.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from nst_engine.imageio import decode_image
from nst_engine.request import StyleRequest
from nst_engine.transfer import stylize
from nst_engine.vgg import CAFFE_MEAN_BGR, CONV_LAYERS, caffe_convs

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = Path("..") / "shared" / "images"
PAIRS: tuple[tuple[str, str], ...] = (
    ("tubingen.jpg", "starry_night.jpg"),
    ("tubingen.jpg", "the_scream.jpg"),
    ("tubingen.jpg", "shipwreck.jpg"),
    ("golden_gate.jpg", "starry_night.jpg"),
    ("golden_gate.jpg", "the_scream.jpg"),
)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
NOISE_LONG_SIDE = 256
SHEET_TILE = 256
CAPTION_HEIGHT = 52
TABLE_HEADER = f"{'pair':26} {'style':>7} {'content':>8} {'chroma':>7} {'luma':>6} {'evals':>6} {'seconds':>8}"


class Evaluator:
    """VGG19 (original weights, zero padding, max pooling) with its own forward pass.

    Built here rather than taken from the engine so that no engine option (padding, pooling,
    layer weights) can change the scores.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.convs = {
            name: (conv.weight.detach().to(device), conv.bias.detach().to(device))
            for name, conv in caffe_convs().items()
        }
        self.mean = torch.tensor(CAFFE_MEAN_BGR, device=device).view(1, 3, 1, 1)

    def features(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """relu1_1..relu5_1 and relu4_2 of an RGB uint8 (H, W, 3) image."""
        x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).unsqueeze(0).to(self.device)
        x = x.flip(1) - self.mean
        wanted = set(STYLE_LAYERS) | {CONTENT_LAYER}
        outputs: dict[str, torch.Tensor] = {}
        block = "1"
        with torch.no_grad():
            for name in CONV_LAYERS:
                if name[4] != block:
                    x = F.max_pool2d(x, 2, 2)
                    block = name[4]
                weight, bias = self.convs[name]
                x = F.relu(F.conv2d(x, weight, bias, padding=1))
                relu = "relu" + name[4:]
                if relu in wanted:
                    outputs[relu] = x
                if len(outputs) == len(wanted):
                    break
        return outputs

    @staticmethod
    def _gram(features: torch.Tensor) -> torch.Tensor:
        _, c, h, w = features.shape
        flat = features.reshape(c, h * w).double()
        return flat @ flat.T / (h * w)

    def score(self, result: np.ndarray, content: Image.Image, style: Image.Image) -> tuple[float, float]:
        """(style distance, content distance) of ``result`` against its inputs."""
        height, width = result.shape[:2]
        photo = np.asarray(content.resize((width, height), Image.BICUBIC))
        pixels = width * height
        style_height = max(16, round((pixels * style.height / style.width) ** 0.5))
        style_width = max(16, round(style.width / style.height * style_height))
        painting = np.asarray(style.resize((style_width, style_height), Image.BICUBIC))
        ours, photo_features, painting_features = self.features(result), self.features(photo), self.features(painting)
        style_distance = sum(
            (
                torch.linalg.norm(self._gram(ours[name]) - self._gram(painting_features[name]))
                / torch.linalg.norm(self._gram(painting_features[name]))
            ).item()
            for name in STYLE_LAYERS
        ) / len(STYLE_LAYERS)
        target = photo_features[CONTENT_LAYER].double()
        content_distance = (
            torch.linalg.norm(ours[CONTENT_LAYER].double() - target) / torch.linalg.norm(target)
        ).item()
        return style_distance, content_distance


def noise(image: np.ndarray) -> tuple[float, float]:
    """(chroma noise, luma noise): mean |Laplacian| of Cb and Cr, and of Y, at a 256 px long side."""
    picture = Image.fromarray(image)
    scale = NOISE_LONG_SIDE / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    ycbcr = np.asarray(picture.resize(size, Image.BICUBIC).convert("YCbCr"), dtype=np.float64)
    laplacian = (
        ycbcr[1:-1, :-2] + ycbcr[1:-1, 2:] + ycbcr[:-2, 1:-1] + ycbcr[2:, 1:-1] - 4 * ycbcr[1:-1, 1:-1]
    )
    magnitude = np.abs(laplacian).mean(axis=(0, 1))
    return float((magnitude[1] + magnitude[2]) / 2), float(magnitude[0])


@dataclass(frozen=True)
class Row:
    content: str
    style: str
    style_distance: float
    content_distance: float
    chroma_noise: float
    luma_noise: float
    evaluations: int
    seconds: float

    @property
    def pair(self) -> str:
        return f"{Path(self.content).stem} x {Path(self.style).stem}"

    def caption(self) -> str:
        return (
            f"style {self.style_distance:.3f}  content {self.content_distance:.3f}\n"
            f"chroma {self.chroma_noise:.1f}  luma {self.luma_noise:.1f}\n"
            f"{self.evaluations} evals  {self.seconds:.0f} s"
        )


def _tile(image: Image.Image) -> Image.Image:
    tile = Image.new("RGB", (SHEET_TILE, SHEET_TILE), "white")
    thumbnail = image.copy()
    thumbnail.thumbnail((SHEET_TILE, SHEET_TILE), Image.LANCZOS)
    tile.paste(thumbnail, ((SHEET_TILE - thumbnail.width) // 2, (SHEET_TILE - thumbnail.height) // 2))
    return tile


def contact_sheet(
    rows: list[tuple[Image.Image, Image.Image, list[tuple[Image.Image, Row]]]], title: str
) -> Image.Image:
    """Content | style | result(s) per pair, with each result's scores under it."""
    row_height = SHEET_TILE + CAPTION_HEIGHT
    columns = 2 + max(len(results) for _, _, results in rows)
    sheet = Image.new("RGB", (columns * SHEET_TILE, 20 + row_height * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), title, fill="black")
    for index, (content, style, results) in enumerate(rows):
        top = 20 + index * row_height
        for column, image in enumerate((content, style, *(image for image, _ in results))):
            sheet.paste(_tile(image), (column * SHEET_TILE, top))
        draw.text((4, top + SHEET_TILE + 4), results[0][1].pair, fill="black")
        for column, (_, row) in enumerate(results, start=2):
            draw.multiline_text((column * SHEET_TILE + 4, top + SHEET_TILE + 4), row.caption(), fill="black")
    return sheet


def run_checkout(
    checkout: Path, content: Path, style: Path, preset: str, seed: int, device: torch.device, out: Path
) -> tuple[np.ndarray, int, float]:
    """(image, evaluations, seconds) of one pair on the engine of ``checkout``, through its command line."""
    command = [
        sys.executable, "-m", "nst_engine", "stylize", "--content", str(content), "--style", str(style),
        "--preset", preset, "--seed", str(seed), "--device", str(device), "--out", str(out), "--json",
    ]
    finished = subprocess.run(command, cwd=checkout, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"bench_quality: the engine in {checkout} failed:\n{finished.stderr.strip()[-2000:]}")
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    return np.asarray(Image.open(out).convert("RGB")), int(report["evaluations"]), float(report["seconds"])


def _ratio_line(before: Row, after: Row) -> str:
    def ratio(name: str) -> str:
        return f"{getattr(after, name) / getattr(before, name):.2f}x"

    return (
        f"{'  after / before':26} {ratio('style_distance'):>7} {ratio('content_distance'):>8} "
        f"{ratio('chroma_noise'):>7} {ratio('luma_noise'):>6} {'':>6} {ratio('seconds'):>8}"
    )


def _field_value(name: str, text: str) -> object:
    """``text`` converted to the type of StyleRequest's field ``name``."""
    fields = {field.name: field for field in dataclasses.fields(StyleRequest)}
    if name not in fields or name in ("content", "styles"):
        raise SystemExit(f"bench_quality: --set: StyleRequest has no settable field {name!r}")
    hint = str(typing.get_type_hints(StyleRequest)[name])
    if text == "None":
        return None
    if "tuple" in hint:
        item = str if "str" in hint else float
        return tuple(item(part) for part in text.split(",") if part)
    if "bool" in hint:
        return text.lower() in ("1", "true", "yes", "on")
    if "int" in hint and "float" not in hint:
        return int(text)
    if "float" in hint:
        return float(text)
    return text


def _overrides(settings: list[str]) -> dict[str, object]:
    overrides = {}
    for setting in settings:
        name, separator, text = setting.partition("=")
        if not separator:
            raise SystemExit(f"bench_quality: --set wants field=value, not {setting!r}")
        overrides[name.strip()] = _field_value(name.strip(), text.strip())
    return overrides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=("fast", "balanced", "high"), default="fast")
    parser.add_argument(
        "--images", type=Path, default=DEFAULT_IMAGES, help="folder of the images, relative to the repository root"
    )
    parser.add_argument("--sheet", type=Path, default=Path("quality_sheet.png"), help="contact sheet to write")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pairs", help="comma-separated pair numbers 1-5 to run (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="request field override")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--baseline", type=Path, help="another checkout of this project to compare with, pair by pair")
    args = parser.parse_args()

    images = args.images if args.images.is_absolute() else REPO / args.images
    if not images.is_dir():
        print(f"bench_quality: no image folder at {images}", file=sys.stderr)
        return 1
    overrides = _overrides(args.set)
    if args.baseline is not None and overrides:
        raise SystemExit("bench_quality: --baseline runs both engines through their command line; --set cannot apply")
    if args.baseline is not None and not (args.baseline / "nst_engine").is_dir():
        raise SystemExit(f"bench_quality: {args.baseline} is not a checkout of this project (no nst_engine folder)")
    chosen = PAIRS if args.pairs is None else tuple(PAIRS[int(n) - 1] for n in args.pairs.split(","))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    evaluator = Evaluator(device)

    if args.baseline is not None:
        return compare(args, images, chosen, device, evaluator)
    print(f"preset {args.preset}, seed {args.seed}, device {device}, overrides {overrides or 'none'}")
    print(TABLE_HEADER)
    if device.type == "cuda":
        # cuDNN picks its kernels on the first run of each shape; keep that out of the first pair's time.
        content_name, style_name = chosen[0]
        warmup = StyleRequest(
            content=(images / content_name).read_bytes(),
            styles=((images / style_name).read_bytes(),),
            quality=args.preset,
            steps=2,
            **{key: value for key, value in overrides.items() if key != "steps"},
        )
        stylize(warmup, device=device)
    sheet_rows = []
    rows = []
    for content_name, style_name in chosen:
        content_bytes = (images / content_name).read_bytes()
        style_bytes = (images / style_name).read_bytes()
        request = StyleRequest(
            content=content_bytes, styles=(style_bytes,), quality=args.preset, seed=args.seed, **overrides
        )
        started = time.perf_counter()
        result = stylize(request, device=device)
        seconds = time.perf_counter() - started
        content_image = decode_image(content_bytes, max_pixels=request.max_input_pixels)
        style_image = decode_image(style_bytes, max_pixels=request.max_input_pixels)
        style_distance, content_distance = evaluator.score(result.image, content_image, style_image)
        chroma, luma = noise(result.image)
        row = Row(
            content_name, style_name, style_distance, content_distance, chroma, luma, result.evaluations, seconds
        )
        rows.append(row)
        print(
            f"{row.pair:26} {style_distance:7.3f} {content_distance:8.3f} {chroma:7.2f} {luma:6.2f} "
            f"{row.evaluations:6d} {seconds:8.1f}",
            flush=True,
        )
        sheet_rows.append((content_image, style_image, [(Image.fromarray(result.image), row)]))
    title = f"nst_engine, preset {args.preset}, seed {args.seed}, {device}" + (
        f", {', '.join(f'{k}={v}' for k, v in overrides.items())}" if overrides else ""
    )
    contact_sheet(sheet_rows, title).save(args.sheet)
    print(f"contact sheet: {args.sheet}")
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(row) for row in rows], indent=1))
    return 0


def compare(
    args: argparse.Namespace,
    images: Path,
    chosen: tuple[tuple[str, str], ...],
    device: torch.device,
    evaluator: Evaluator,
) -> int:
    """Each pair on the baseline checkout's engine, then on this one; rows before and after, with ratios."""
    print(f"preset {args.preset}, seed {args.seed}, device {device}, before: {args.baseline}, after: this checkout")
    print(TABLE_HEADER)
    sheet_rows = []
    rows: list[dict[str, Row]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for content_name, style_name in chosen:
            content_image = decode_image((images / content_name).read_bytes(), max_pixels=10**8)
            style_image = decode_image((images / style_name).read_bytes(), max_pixels=10**8)
            pair: dict[str, Row] = {}
            results = []
            for label, checkout in (("before", args.baseline.resolve()), ("after", REPO)):
                out = Path(scratch) / f"{label}.png"
                image, evaluations, seconds = run_checkout(
                    checkout, images / content_name, images / style_name, args.preset, args.seed, device, out
                )
                style_distance, content_distance = evaluator.score(image, content_image, style_image)
                row = Row(content_name, style_name, style_distance, content_distance, *noise(image), evaluations, seconds)
                pair[label] = row
                results.append((Image.fromarray(image), row))
                print(
                    f"{row.pair + ' ' + label:26} {style_distance:7.3f} {content_distance:8.3f} {row.chroma_noise:7.2f} "
                    f"{row.luma_noise:6.2f} {evaluations:6d} {seconds:8.1f}",
                    flush=True,
                )
            print(_ratio_line(pair["before"], pair["after"]), flush=True)
            rows.append(pair)
            sheet_rows.append((content_image, style_image, results))
    title = f"preset {args.preset}, seed {args.seed}, {device}: content | style | before | after"
    contact_sheet(sheet_rows, title).save(args.sheet)
    print(f"contact sheet: {args.sheet}")
    if args.json is not None:
        args.json.write_text(
            json.dumps([{label: dataclasses.asdict(row) for label, row in pair.items()} for pair in rows], indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
