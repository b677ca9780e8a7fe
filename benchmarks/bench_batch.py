"""Throughput of one batch of same-shape jobs against the same jobs run one after another.

    python benchmarks/bench_batch.py                                   # CPU, tiny
    python benchmarks/bench_batch.py --device cuda --jobs 8 --size 512 --steps 200

The engine alone, no pool: ``stylize_batch`` (one batched forward and backward per step,
eager) against ``stylize`` per job, both eager and with the device's default speed-ups
(CUDA graphs on a GPU). Each side is warmed up at its own shape first; the sides then take
turns for ``--rounds`` rounds and the medians are compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from nst_engine import acceleration
from nst_engine.acceleration import EAGER
from nst_engine.batch import stylize_batch
from nst_engine.device import resolve_device
from nst_engine.imageio import decode_image, encode_image
from nst_engine.request import StyleRequest
from nst_engine.transfer import stylize

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"


def small_png(path: Path, long_side: int) -> bytes:
    """The image shrunk close to the job size, so decoding does not dominate small jobs."""
    image = decode_image(path.read_bytes(), max_pixels=100_000_000)
    image.thumbnail((long_side * 2, long_side * 2))
    return encode_image(image, "png")


def timed(device: str, work) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    work()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--content", type=Path, default=IMAGES / "tubingen.jpg")
    parser.add_argument("--style", type=Path, default=IMAGES / "starry_night.jpg")
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    content, style = small_png(args.content, args.size), small_png(args.style, args.size)
    requests = [
        StyleRequest(content=content, styles=(style,), size=args.size, steps=args.steps, seed=index, multiscale=False)
        for index in range(args.jobs)
    ]
    default = acceleration.default_for(torch.device(device))
    print(f"{args.jobs} jobs, {args.size} px, {args.steps} evaluations each, on {device}, torch {torch.__version__}")

    def batched() -> None:
        for outcome in stylize_batch(requests, device=device):
            if isinstance(outcome, BaseException):
                raise outcome

    sides = {
        "batched (eager)": batched,
        "one by one (eager)": lambda: [stylize(request, device=device, speedups=EAGER) for request in requests],
    }
    if not default.eager:
        sides[f"one by one ({'bf16 ' if default.bf16 else ''}graphs)"] = lambda: [
            stylize(request, device=device, speedups=default) for request in requests
        ]
    warm = [dataclasses.replace(request, steps=5) for request in requests]
    stylize_batch(warm, device=device)
    stylize(warm[0], device=device, speedups=default)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(args.rounds):
        for name, work in sides.items():
            times[name].append(timed(device, work))
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {seconds[-1]:.2f} s" for name, seconds in times.items()))
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    batched_seconds = medians["batched (eager)"]
    for name, seconds in medians.items():
        print(f"{name}: {seconds:.2f} s, {args.jobs / seconds:.3f} jobs/s")
    for name, seconds in medians.items():
        if name != "batched (eager)":
            print(
                f"RESULT batch {args.jobs} x {args.size}px x {args.steps}: batched throughput / {name}: "
                f"{seconds / batched_seconds:.2f}x"
            )


if __name__ == "__main__":
    main()
