"""Throughput of the executor pool against running the same jobs one after another.

    python benchmarks/bench_pool.py                      # CPU: 2 workers x 1 thread vs 1 process x all cores, 3 rounds
    python benchmarks/bench_pool.py --device cuda --workers 2 --size 512 --steps 100
    python benchmarks/bench_pool.py --backend ray        # local pool vs Ray: one node, then two nodes

Both sides start warm (VGG19 loaded, one job run) and run the same N jobs: the pool gets
them all at once from N owners, the baseline runs them in this process in a loop. The two
take turns, pool then sequential, for ``--rounds`` rounds, so a change in the machine's load
hits both alike; each round gives one ratio (pool throughput over sequential throughput),
and the medians are what to quote.

With ``--max-batch N`` a second pool, the same workers but each batching up to N jobs of one
shape, runs the same jobs in the same turns (pool, batched pool, sequential). From 256 px the
jobs run coarse to fine, as the presets do, and batch at each of their scales:

    python benchmarks/bench_pool.py --max-batch 4 --jobs 4 --size 256

With ``--backend ray`` the two sides are the local pool and the same number of workers as
Ray actors, again in turns: first on a single-node Ray, then on two Ray nodes of one
``ray.cluster_utils.Cluster`` on this machine (one actor per node; the nodes advertise a GPU
for placement, the actors run on the CPU). What separates the two is Ray's per-job cost.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from nst_engine.imageio import decode_image, encode_image
from nst_engine.pool import Pool, PoolConfig, RayConfig
from nst_engine.pool.devices import available_cores, threads_per_worker
from nst_engine.request import StyleRequest

IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "images"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="ray: compare the local pool with Ray actors"
    )
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="pool workers on the device (default: 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per pool worker (default: split)")
    parser.add_argument(
        "--sequential-threads", type=int, default=None, help="torch threads of the sequential run (default: all cores)"
    )
    parser.add_argument("--size", type=int, default=128, help="output long side in pixels")
    parser.add_argument("--steps", type=int, default=20, help="evaluations per job")
    parser.add_argument("--rounds", type=int, default=3, help="pool/sequential turns; medians are taken over them")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="also run the same jobs on a pool whose workers batch up to this many, in the same turns",
    )
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
        StyleRequest(
            content=content,
            styles=(style,),
            size=args.size,
            steps=args.steps,
            seed=index,
        )
        for index in range(args.jobs)
    ]


def sequential_runner(requests: list[StyleRequest], device: str, threads: int) -> Callable[[], float]:
    """Warm this process up (weights loaded, one job run); the returned call times one sequential pass."""
    import torch

    from nst_engine.transfer import stylize
    from nst_engine.vgg import load_vgg19

    if device == "cpu":
        torch.set_num_threads(threads)
    load_vgg19("caffe", device)
    stylize(requests[0], device=device)
    _synchronize(device)

    def run() -> float:
        started = time.perf_counter()
        for request in requests:
            stylize(request, device=device)
        _synchronize(device)
        return time.perf_counter() - started

    return run


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


async def pool_pass(pool: Pool, requests: list[StyleRequest], tag: str) -> float:
    """Seconds for the pool to finish every request, all submitted at once from different owners."""
    started = time.perf_counter()
    jobs = [pool.submit(request, owner=f"{tag}-{i}", preview_size=None) for i, request in enumerate(requests)]
    for job in jobs:
        await job.result()
    return time.perf_counter() - started


async def warm_pool(config: PoolConfig, requests: list[StyleRequest]) -> Pool:
    """A started pool whose workers have each run a job (a batch, when they batch) at the jobs' shape."""
    pool = await Pool.start(config)
    warmups = [
        pool.submit(requests[0], owner=f"warmup{i}", preview_size=None)
        for i in range(config.workers_per_device * config.max_batch)
    ]
    for job in warmups:
        await job.result()
    return pool


async def measure(
    args: argparse.Namespace, config: PoolConfig, requests: list[StyleRequest], sequential_threads: int
) -> tuple[list[float], list[float], list[float]]:
    """Pool, batched pool (with --max-batch) and sequential passes in turns (A B C A B C ...), all warm:
    the seconds of each, in order."""
    pool = await warm_pool(config, requests)
    batched = None
    try:
        if args.max_batch:
            batched = await warm_pool(dataclasses.replace(config, max_batch=args.max_batch), requests)
        # The sequential side runs in a thread so the pool's event loop keeps reading its idle workers' heartbeats.
        sequential = await asyncio.to_thread(sequential_runner, requests, args.device, sequential_threads)
        pooled_s, batched_s, sequential_s = [], [], []
        for round_index in range(1, args.rounds + 1):
            pooled_s.append(await pool_pass(pool, requests, f"round{round_index}"))
            line = f"round {round_index}: pool {pooled_s[-1]:7.2f} s   "
            if batched is not None:
                batched_s.append(await pool_pass(batched, requests, f"batched{round_index}"))
                line += f"batched {batched_s[-1]:7.2f} s ({pooled_s[-1] / batched_s[-1]:.2f}x)   "
            sequential_s.append(await asyncio.to_thread(sequential))
            print(
                f"{line}sequential {sequential_s[-1]:7.2f} s   ratio {sequential_s[-1] / pooled_s[-1]:.2f}x   "
                f"(load {_load()})",
                flush=True,
            )
        return pooled_s, batched_s, sequential_s
    finally:
        await pool.close()
        if batched is not None:
            await batched.close()


def main() -> None:
    args = parse_args()
    if args.rounds < 1:
        raise SystemExit("--rounds must be 1 or more")
    if args.max_batch is not None and args.max_batch < 2:
        raise SystemExit("--max-batch must be 2 or more")
    workers = args.workers or 2
    config = PoolConfig(
        devices=[args.device],
        workers_per_device=workers,
        cpu_threads=args.threads,
        queue_size=max(32, args.jobs),
        per_owner_limit=1,
    )
    requests = make_requests(args)
    if args.backend == "ray":
        if args.max_batch is not None:
            raise SystemExit("--max-batch compares local pools; leave it out with --backend ray")
        ray_comparison(args, config, requests)
        return
    import torch

    threads = threads_per_worker(config.devices, workers, config.cpu_threads)
    sequential_threads = args.sequential_threads or available_cores()
    pool_desc = f"{workers} workers" + (f" x {threads} threads" if args.device == "cpu" else "")
    seq_desc = f"1 process x {sequential_threads} threads" if args.device == "cpu" else "1 process"
    print(f"{args.jobs} jobs, {args.size} px, {args.steps} evaluations each, on {args.device}")
    print(f"scales: {_scales(requests[0])}")
    print(
        f"machine: {platform.machine()}, {available_cores()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )
    print(f"pool: {pool_desc}; sequential: {seq_desc}; {args.rounds} rounds, pool then sequential in each")
    print(f"load average before: {_load()}")

    pooled_s, batched_s, sequential_s = asyncio.run(measure(args, config, requests, sequential_threads))
    ratios = [seq / pool for pool, seq in zip(pooled_s, sequential_s, strict=True)]
    pooled, sequential = statistics.median(pooled_s), statistics.median(sequential_s)
    print(f"pool, median:       {pooled:7.2f} s  {args.jobs / pooled:6.3f} jobs/s")
    print(f"sequential, median: {sequential:7.2f} s  {args.jobs / sequential:6.3f} jobs/s")
    print(
        f"ratio (pool / sequential throughput): median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x, over {len(ratios)} rounds)"
    )
    if batched_s:
        gains = [pool / batch for pool, batch in zip(pooled_s, batched_s, strict=True)]
        batched_median = statistics.median(batched_s)
        print(
            f"batched pool (max_batch {args.max_batch}), median: {batched_median:7.2f} s  "
            f"{args.jobs / batched_median:6.3f} jobs/s"
        )
        print(
            f"ratio (batched / unbatched pool throughput): median {statistics.median(gains):.2f}x "
            f"(min {min(gains):.2f}x, max {max(gains):.2f}x, over {len(gains)} rounds)"
        )
        print(
            f"ratio (batched pool / sequential throughput): median "
            f"{statistics.median(seq / batch for batch, seq in zip(batched_s, sequential_s, strict=True)):.2f}x"
        )
    print(f"load average after: {_load()}")


def ray_comparison(args: argparse.Namespace, local: PoolConfig, requests: list[StyleRequest]) -> None:
    """The local pool against Ray actors, in turns: on one Ray node, then on two."""
    import ray
    import torch
    from ray.cluster_utils import Cluster

    if args.device != "cpu":
        raise SystemExit("--backend ray compares CPU workers on this machine; use --device cpu")
    workers = local.workers_per_device
    threads = threads_per_worker(("cpu",), workers, local.cpu_threads)
    print(f"{args.jobs} jobs, {args.size} px, {args.steps} evaluations each, on the CPU")
    print(
        f"machine: {platform.machine()}, {available_cores()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, ray {ray.__version__}"
    )
    print(f"local: {workers} worker processes x {threads} threads; ray: {workers} actors x {threads} threads")
    print(f"{args.rounds} rounds, local then ray in each; load average before: {_load()}")
    on_ray = dict(
        backend="ray", cpu_threads=threads, queue_size=local.queue_size, per_owner_limit=local.per_owner_limit
    )
    store = 100 * 2**20
    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={"num_cpus": available_cores(), "object_store_memory": store, "include_dashboard": False},
    )
    try:
        one_node = PoolConfig(ray=RayConfig(cpu_workers=workers), **on_ray)
        asyncio.run(compare_backends(args, "single-node ray", local, one_node, requests))
        for _ in range(workers):
            cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        # The head has no GPU, so with no CPU workers every actor goes to a node with a (fake) GPU: one per node.
        several_nodes = PoolConfig(ray=RayConfig(cpu_workers=0), **on_ray)
        asyncio.run(compare_backends(args, f"{workers}-node ray", local, several_nodes, requests))
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"load average after: {_load()}")


async def compare_backends(
    args: argparse.Namespace, name: str, local: PoolConfig, remote: PoolConfig, requests: list[StyleRequest]
) -> None:
    """Both pools warm, then a pass on each in turns; prints each round and the medians."""
    pools = [await Pool.start(local), await Pool.start(remote)]
    try:
        for pool in pools:
            workers = sum(pool.stats().workers_by_device.values())
            await asyncio.gather(
                *(pool.submit(requests[0], owner=f"warmup{i}", preview_size=None).result() for i in range(workers))
            )
        local_s, remote_s = [], []
        for round_index in range(1, args.rounds + 1):
            local_s.append(await pool_pass(pools[0], requests, f"local{round_index}"))
            remote_s.append(await pool_pass(pools[1], requests, f"remote{round_index}"))
            print(
                f"{name}, round {round_index}: local {local_s[-1]:7.2f} s   {name} {remote_s[-1]:7.2f} s   "
                f"ratio {local_s[-1] / remote_s[-1]:.2f}x   (load {_load()})",
                flush=True,
            )
    finally:
        for pool in pools:
            await pool.close()
    ratios = [loc / rem for loc, rem in zip(local_s, remote_s, strict=True)]
    local_median, remote_median = statistics.median(local_s), statistics.median(remote_s)
    overhead_ms = (remote_median - local_median) / args.jobs * 1000
    print(f"{name}: local median {local_median:.2f} s, {name} median {remote_median:.2f} s")
    print(
        f"{name}: throughput, ray / local: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x); extra time per job on ray: {overhead_ms:+.0f} ms"
    )


def _scales(request: StyleRequest) -> str:
    """The job's ladder as the engine plans it: coarse-to-fine jobs batch at each of their scales."""
    from nst_engine.transfer import plan_request

    return " -> ".join(f"{side} px ({budget} evaluations)" for side, budget in plan_request(request).scales)


def _load() -> str:
    """The 1/5/15-minute load averages: other programs on the machine skew every figure."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
