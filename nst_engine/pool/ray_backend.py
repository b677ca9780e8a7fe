"""Worker slots on a Ray cluster: one Ray Core actor per slot, pinned to a node and a share of a GPU.

The backend polls the cluster's node list and plans slots from it: ``workers_per_gpu`` on each
GPU, ``cpu_workers`` on each node without one. The pool starts and replaces slots by that plan,
so a node joining gets actors without a restart and a node leaving takes its slots with it.
Only this module and :mod:`.ray_actor` know Ray; the queue stays in the pool, in this process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .config import RayConfig
from .devices import DeviceType
from .errors import PoolError
from .protocol import FromWorker, Heartbeat, JobEnded, Ready, RunJob, StartFailed
from .ray_actor import ActorReady, StyleActor, actor_concurrency
from .slot import KillReason, OnExit, OnMessage, SlotBackend, WorkerSlot

log = logging.getLogger("nst_engine.pool.ray")

_CONNECT_PROBE_TIMEOUT_S = 5.0
_CONNECT_TIMEOUT_S = 60.0
# Torch threads of an actor feeding a GPU; CPU actors share their node's cores instead.
_GPU_ACTOR_THREADS = 2

_RemoteActor = ray.remote(max_restarts=0)(StyleActor)


@dataclass(frozen=True)
class PlannedSlot:
    """Where one actor should run: a node (by id and by its label for people) and a device kind."""

    node_id: str
    node: str
    kind: DeviceType
    num_gpus: float
    threads: int


def node_label(node: Mapping[str, Any]) -> str:
    """How a node is named in status and metrics: its address, and the start of its id (several
    nodes may share an address, e.g. on one test machine)."""
    return f"{node['NodeManagerAddress']}-{node['NodeID'][:6]}"


def plan_slots(nodes: list[Mapping[str, Any]], config: RayConfig, cpu_threads: int | None) -> dict[str, PlannedSlot]:
    """Slot id -> placement for every alive node in ``nodes`` (``ray.nodes()``'s answer)."""
    alive = [node for node in nodes if node.get("Alive")]
    any_gpu = any(node["Resources"].get("GPU", 0) >= 1 for node in alive)
    cpu_workers = config.cpu_workers if config.cpu_workers >= 0 else (0 if any_gpu else 1)
    plan: dict[str, PlannedSlot] = {}
    for node in sorted(alive, key=lambda n: n["NodeID"]):
        node_id, label = node["NodeID"], node_label(node)
        gpus = int(node["Resources"].get("GPU", 0))
        for gpu in range(gpus):
            for index in range(config.workers_per_gpu):
                plan[f"{label}/gpu{gpu}/{index}"] = PlannedSlot(
                    node_id, label, "cuda", 1 / config.workers_per_gpu, cpu_threads or _GPU_ACTOR_THREADS
                )
        if gpus == 0 and cpu_workers:
            cores = int(node["Resources"].get("CPU", 1)) or 1
            threads = cpu_threads or max(1, cores // cpu_workers)
            for index in range(cpu_workers):
                plan[f"{label}/cpu/{index}"] = PlannedSlot(node_id, label, "cpu", 0.0, threads)
    return plan


class RaySlot(WorkerSlot):
    """One actor, running up to ``max_batch`` jobs at once. Its messages are the local workers':
    the pool cannot tell the two apart."""

    def __init__(
        self,
        slot_id: str,
        planned: PlannedSlot,
        *,
        weights: str,
        heartbeat_interval_s: float,
        on_message: OnMessage,
        on_exit: OnExit,
        max_batch: int = 1,
    ) -> None:
        super().__init__(slot_id, planned.kind, on_message=on_message, on_exit=on_exit)
        self.capacity = max_batch
        self.node = planned.node
        self.place = f"{planned.node}/{planned.kind}"
        self._planned = planned
        self._weights = weights
        self._heartbeat_interval_s = heartbeat_interval_s
        self._actor: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ending: str | None = None

    def __repr__(self) -> str:
        return f"<RaySlot {self.id} {self.state}>"

    def start(self) -> None:
        self._spawn(self._life())

    def run(self, message: RunJob) -> None:
        self._spawn(self._stream(message))

    def cancel(self, job_id: str) -> None:
        if self._actor is not None:
            self._actor.cancel.remote(job_id)

    def stop(self) -> None:
        if self.state == "dead":
            return
        self.state = "stopping"
        if not self.assignments:
            self._end("it was stopped")

    def kill(self, reason: KillReason) -> None:
        if self.state == "dead":
            return
        if self.kill_reason is None:
            self.kill_reason = reason
        log.warning("killing actor of slot %s: %s", self.id, reason)
        self._end(f"it was killed ({reason})")

    def describe_exit(self) -> str:
        return self._ending or "it stopped for an unknown reason"

    def death_message(self) -> str:
        if self.kill_reason == "unresponsive":
            return "The worker stopped responding while running your job; please try again."
        return f"The worker on {self.node} was lost while running your job ({self.describe_exit()}); please try again."

    def rerun_lost_jobs(self) -> bool:
        # An actor gone without the pool killing it, or silent (its node unreachable), lost
        # the job with it; a job the pool stopped on purpose is not run again.
        return self.kill_reason in (None, "unresponsive")

    # --- the actor's life, on the event loop -----------------------------------------------

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _life(self) -> None:
        planned = self._planned
        try:
            self._actor = _RemoteActor.options(
                num_cpus=0,
                num_gpus=planned.num_gpus,
                max_concurrency=actor_concurrency(self.capacity),
                scheduling_strategy=NodeAffinitySchedulingStrategy(planned.node_id, soft=False),
            ).remote(self._weights, planned.threads, self.capacity)
            answer = await self._actor.ready.remote()
        except RayError as exc:
            self.start_error = f"The worker on {self.node} could not start ({_first_line(exc)})."
            self._end("it could not start")
            return
        if isinstance(answer, StartFailed):
            self._post(answer)
            self._end("it could not start")
            return
        assert isinstance(answer, ActorReady)
        self.device = answer.device
        self.place = f"{self.node}/{answer.place}"
        self._post(Ready(answer.pid, answer.memory_used, answer.memory_total))
        await self._beat()

    async def _beat(self) -> None:
        """Ask the actor how it is, every interval, until it or this slot ends."""
        while self.state != "dead":
            await asyncio.sleep(self._heartbeat_interval_s)
            try:
                used, total = await self._actor.heartbeat.remote()
            except ActorUnavailableError:
                continue  # maybe a passing network fault: the pool's watchdog judges silence
            except RayError as exc:
                self._end(f"its actor died: {_first_line(exc)}")
                return
            self._post(Heartbeat(used, total))

    async def _stream(self, message: RunJob) -> None:
        try:
            async for reference in self._actor.run.remote(message):
                update: FromWorker = await reference
                self._post(update)
                if isinstance(update, JobEnded) and update.retiring:
                    self._end("it retired after an unexpected error")
                    return
        except RayError as exc:
            self._end(f"its actor or node was lost: {_first_line(exc)}")
            return
        if self.state == "stopping" and not self.assignments:
            self._end("it was stopped")

    def _post(self, message: FromWorker) -> None:
        if self.state != "dead":
            self._on_message(self, message)

    def _end(self, how: str) -> None:
        """Kill the actor (if any) and tell the pool, once."""
        if self.state == "dead":
            return
        self._ending = how
        self.state = "dead"
        if self._actor is not None:
            try:
                ray.kill(self._actor, no_restart=True)
            except RayError:
                pass  # already gone
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if not self.ready.done():
            self.ready.set_result(self.start_error or f"The worker on {self.node} could not start.")
        self._on_exit(self)


class RayBackend(SlotBackend):
    """Slots on the nodes of a Ray cluster, replanned as nodes come and go."""

    name = "ray"

    def __init__(
        self,
        config: RayConfig,
        *,
        weights: str,
        cpu_threads: int | None,
        heartbeat_interval_s: float,
        stale_after_s: float,
        max_batch: int = 1,
    ) -> None:
        self.config = config
        self._max_batch = max_batch
        self._weights = weights
        self._cpu_threads = cpu_threads
        self._heartbeat_interval_s = heartbeat_interval_s
        # The node list must have been read this recently for the cluster to count as reachable.
        self._stale_after_s = max(stale_after_s, 3 * config.node_poll_interval_s)
        self._plan: dict[str, PlannedSlot] = {}
        self._owner: threading.Thread | None = None
        self._last_answer = time.monotonic()
        self._poller: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def address(self) -> str:
        return self.config.address or "a private Ray started here"

    async def open(self, on_plan_changed: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._connect)
        nodes = await asyncio.to_thread(ray.nodes)
        self._plan = plan_slots(nodes, self.config, self._cpu_threads)
        self._last_answer = time.monotonic()
        log.info("Ray cluster %s: %d nodes, %d worker slots", self.address, len(nodes), len(self._plan))
        loop = asyncio.get_running_loop()
        self._poller = threading.Thread(
            target=self._poll, args=(loop, on_plan_changed), name="ray-node-poller", daemon=True
        )
        self._poller.start()

    def _connect(self) -> None:
        address = self.config.address
        if address and address != "auto":
            _probe(address)
        if ray.is_initialized():
            return  # one Ray connection per process: share the one already made (tests do)
        kwargs: dict[str, Any] = dict(
            namespace=self.config.namespace, configure_logging=False, log_to_driver=False, include_dashboard=False
        )
        if not address:
            kwargs.update(address="local", num_cpus=os.cpu_count())
        else:
            kwargs.update(address=address)
            kwargs.pop("include_dashboard")
        outcome: list[BaseException | None] = []
        answered = threading.Event()

        def own_ray() -> None:
            # ray.init and ray.shutdown in one thread that lives as long as the connection: the
            # processes a private Ray starts die with the thread that started them.
            try:
                ray.init(**kwargs)
                outcome.append(None)
            except BaseException as exc:  # ray.init may even raise SystemExit; report it, never exit here
                outcome.append(exc)
                return
            finally:
                answered.set()
            self._closing.wait()
            ray.shutdown()

        # ray.init can wait for ever on an address that accepts connections but is no Ray: give up in time.
        self._owner = threading.Thread(target=own_ray, name="ray-connection", daemon=True)
        self._owner.start()
        if not answered.wait(_CONNECT_TIMEOUT_S):
            raise PoolError(f"The Ray cluster at {self.address} did not answer within {_CONNECT_TIMEOUT_S:g} s.")
        if outcome[0] is not None:
            raise PoolError(f"Could not join the Ray cluster at {self.address}: {_first_line(outcome[0])}.")

    def _poll(self, loop: asyncio.AbstractEventLoop, on_plan_changed: Callable[[], None]) -> None:
        """Read the node list every interval (in a thread: the call may hang while Ray is away)."""
        while not self._closing.wait(self.config.node_poll_interval_s):
            try:
                nodes = ray.nodes()
            except Exception:
                log.warning("cannot read the Ray cluster's nodes", exc_info=True)
                continue
            try:
                loop.call_soon_threadsafe(self._replan, nodes, on_plan_changed)
            except RuntimeError:
                return  # the loop is closed

    def _replan(self, nodes: list[Mapping[str, Any]], on_plan_changed: Callable[[], None]) -> None:
        reconnected = not self.connected()
        self._last_answer = time.monotonic()
        plan = plan_slots(nodes, self.config, self._cpu_threads)
        if plan != self._plan or reconnected:
            if plan.keys() != self._plan.keys():
                log.info("Ray nodes changed: %d worker slots now", len(plan))
            self._plan = plan
            on_plan_changed()

    def plan(self) -> Mapping[str, str]:
        return {slot_id: planned.kind for slot_id, planned in self._plan.items()}

    def places(self) -> list[str]:
        # A slot's place (node and GPU) is known once its actor says which GPU Ray gave it.
        return []

    def create(self, slot_id: str, *, on_message: OnMessage, on_exit: OnExit) -> RaySlot:
        return RaySlot(
            slot_id,
            self._plan[slot_id],
            weights=self._weights,
            heartbeat_interval_s=self._heartbeat_interval_s,
            on_message=on_message,
            on_exit=on_exit,
            max_batch=self._max_batch,
        )

    def connected(self) -> bool:
        return time.monotonic() - self._last_answer <= self._stale_after_s

    async def close(self) -> None:
        self._closing.set()
        if self._owner is not None:
            await asyncio.to_thread(self._owner.join)


def _probe(address: str) -> None:
    """Refuse an address nothing listens on at once: ``ray.init`` would retry it for ever."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PoolError(f"The Ray address {address!r} is not of the form host:port.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise PoolError(f"Could not reach the Ray cluster at {address} ({exc.strerror or exc}).") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

