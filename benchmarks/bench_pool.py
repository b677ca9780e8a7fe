"""Throughput of the executor pool against running the same jobs one after another.

    python benchmarks/bench_pool.py                      # CPU: 2 workers x 1 thread vs 1 process x all cores
    python benchmarks/bench_pool.py --device cuda --workers 2 --size 512 --steps 100

Both sides start warm (VGG19 loaded, one job run) and run the same N jobs: the pool gets
them all at once from N owners, the baseline runs them in this process in a loop. The
ratio printed is pool throughput over sequential throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from pathlib import Path

from nst_engine.imageio import decode_image, encode_image
from nst_engine.pool import Pool, PoolConfig
from nst_engine.pool.devices import available_cores, threads_per_worker
from nst_engine.request import StyleRequest

IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "images"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="pool workers on the device (default: 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per pool worker (default: split)")
    parser.add_argument(
        "--sequential-threads", type=int, default=None, help="torch threads of the sequential run (default: all cores)"
    )
    parser.add_argument("--size", type=int, default=128, help="output long side in pixels")
    parser.add_argument("--steps", type=int, default=20, help="evaluations per job")
    parser.add_argument("--content", type=Path, default=IMAGES / "tubingen.jpg")
    parser.add_argument("--style", type=Path, default=IMAGES / "starry_night.jpg")
    return parser.parse_args()


def small_png(path: Path, long_side: int) -> bytes:
    """The image shrunk close to the job size, so decoding does not dominate tiny jobs."""
    image = decode_image(path.read_bytes(), max_pixels=100_000_000)
    image.thumbnail((long_side * 2, long_side * 2))
    return encode_image(image, "png")


def make_requests(args: argparse.Namespace) -> list[StyleRequest]:
    content = small_png(args.content, args.size)
    style = small_png(args.style, args.size)
    return [
        StyleRequest(content=content, styles=(style,), size=args.size, steps=args.steps, seed=index)
        for index in range(args.jobs)
    ]


def run_sequential(requests: list[StyleRequest], device: str, threads: int) -> float:
    """Seconds to run every request in this process, one after another, after a warm-up job."""
    import torch

    from nst_engine.transfer import stylize
    from nst_engine.vgg import load_vgg19

    if device == "cpu":
        torch.set_num_threads(threads)
    load_vgg19("caffe", device)
    stylize(requests[0], device=device)
    _synchronize(device)
    started = time.perf_counter()
    for request in requests:
        stylize(request, device=device)
    _synchronize(device)
    return time.perf_counter() - started


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


async def run_pool(requests: list[StyleRequest], config: PoolConfig) -> float:
    """Seconds for the pool to finish every request submitted at once, after a warm-up job per worker."""
    pool = await Pool.start(config)
    try:
        warmups = [
            pool.submit(requests[0], owner=f"warmup{i}", preview_size=None) for i in range(config.workers_per_device)
        ]
        for job in warmups:
            await job.result()
        started = time.perf_counter()
        jobs = [pool.submit(request, owner=f"owner{i}", preview_size=None) for i, request in enumerate(requests)]
        for job in jobs:
            await job.result()
        return time.perf_counter() - started
    finally:
        await pool.close()


def main() -> None:
    args = parse_args()
    workers = args.workers or 2
    config = PoolConfig(
        devices=[args.device],
        workers_per_device=workers,
        cpu_threads=args.threads,
        queue_size=max(32, args.jobs),
        per_owner_limit=1,
    )
    requests = make_requests(args)
    print(f"{args.jobs} jobs, {args.size} px, {args.steps} evaluations each, on {args.device}")
    import torch

    print(
        f"machine: {platform.machine()}, {available_cores()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )

    print(f"load average before: {_load()}")

    pooled = asyncio.run(run_pool(requests, config))
    threads = threads_per_worker(config.devices, workers, config.cpu_threads)
    pool_desc = f"{workers} workers" + (f" x {threads} threads" if args.device == "cpu" else "")
    print(f"pool ({pool_desc}): {pooled:7.2f} s  {args.jobs / pooled:6.3f} jobs/s")

    sequential_threads = args.sequential_threads or available_cores()
    sequential = run_sequential(requests, args.device, sequential_threads)
    seq_desc = f"1 process x {sequential_threads} threads" if args.device == "cpu" else "1 process"
    print(f"sequential ({seq_desc}): {sequential:7.2f} s  {args.jobs / sequential:6.3f} jobs/s")
    print(f"ratio (pool / sequential throughput): {sequential / pooled:.2f}x")
    print(f"load average after: {_load()}")


def _load() -> str:
    """The 1/5/15-minute load averages: other programs on the machine skew every figure."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
