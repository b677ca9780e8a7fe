"""How the Ray backend plans worker slots from the cluster's node list (no Ray needed)."""

from __future__ import annotations

from nst_engine.pool import RayConfig
from nst_engine.pool.ray_backend import plan_slots


def node(node_id: str, address: str, *, gpus: int = 0, cpus: int = 8, alive: bool = True) -> dict:
    resources = {"CPU": float(cpus), **({"GPU": float(gpus)} if gpus else {})}
    return {"NodeID": node_id, "NodeManagerAddress": address, "Alive": alive, "Resources": resources}


def test_each_gpu_gets_its_workers_each_with_a_share_of_it() -> None:
    plan = plan_slots([node("aaaaaa01", "10.0.0.2", gpus=2)], RayConfig(workers_per_gpu=2), cpu_threads=None)
    assert sorted(plan) == [f"10.0.0.2-aaaaaa/gpu{g}/{i}" for g in (0, 1) for i in (0, 1)]
    assert {(slot.kind, slot.num_gpus, slot.node_id) for slot in plan.values()} == {("cuda", 0.5, "aaaaaa01")}


def test_nodes_without_a_gpu_work_only_when_no_node_has_one_unless_told() -> None:
    cpu_only = [node("bbbbbb01", "10.0.0.3", cpus=8), node("cccccc01", "10.0.0.4", cpus=4)]
    plan = plan_slots(cpu_only, RayConfig(), cpu_threads=None)
    assert sorted(plan) == ["10.0.0.3-bbbbbb/cpu/0", "10.0.0.4-cccccc/cpu/0"]
    assert [plan[key].threads for key in sorted(plan)] == [8, 4]

    mixed = [*cpu_only, node("aaaaaa01", "10.0.0.2", gpus=1)]
    assert sorted(plan_slots(mixed, RayConfig(), cpu_threads=None)) == ["10.0.0.2-aaaaaa/gpu0/0"]
    told = plan_slots(mixed, RayConfig(cpu_workers=2), cpu_threads=1)
    assert len([slot for slot in told.values() if slot.kind == "cpu"]) == 4
    assert {slot.threads for slot in told.values()} == {1}


def test_dead_nodes_have_no_slots() -> None:
    nodes = [node("aaaaaa01", "10.0.0.2", gpus=1), node("dddddd01", "10.0.0.5", gpus=1, alive=False)]
    assert list(plan_slots(nodes, RayConfig(), cpu_threads=None)) == ["10.0.0.2-aaaaaa/gpu0/0"]
