"""Hooks and fixtures shared by the whole suite. Area-specific fixtures live in each subfolder's conftest."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO_ROOT.parent / "shared" / "images"
"""The real photos and paintings (``../shared/images`` seen from the repository)."""
# Jobs and their results are small; Ray's default store would reserve several GiB of shared memory.
RAY_OBJECT_STORE_BYTES = 100 * 2**20


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when no CUDA device is visible."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch  # only paid for when a GPU test was collected

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def images_dir() -> Path:
    """The directory of real test images; fails loudly when the checkout lacks it."""
    if not IMAGES_DIR.is_dir():
        pytest.fail(f"the real test images are expected in {IMAGES_DIR}")
    return IMAGES_DIR


@pytest.fixture(scope="session")
def ray_cluster():
    """One small Ray instance for the whole session (starting Ray takes seconds): a head node
    with two CPUs, the driver connected. Tests add and remove nodes of their own and must leave
    it as they found it. Shut down, every Ray process with it, when the session ends."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={"num_cpus": 2, "object_store_memory": RAY_OBJECT_STORE_BYTES, "include_dashboard": False},
    )
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()

