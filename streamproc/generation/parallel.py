"""Context-parallel generation: one worker drives K devices (``generation.gpus_per_worker``).

Rank 0 is the worker process itself: it reads, caches, batches, decodes, stores and publishes
as a one-device worker does. At start it spawns ranks 1..K-1 (one process per device, NCCL on
CUDA, gloo on the CPU), and every denoising call it makes — warm-up and real batches alike —
it first sends to each of them over a pipe of its own; then all K run the same call with the
transformer's token sequence split across them (diffusers' context parallelism for
``WanTransformer3DModel``: Ulysses or ring attention, the output gathered on every rank).
Only rank 0 decodes.

Invariants:

* **The ranks run the same calls in the same order.** A rank runs nothing but what rank 0
  sends it, and rank 0 sends each call to every rank before running it itself, so their
  collectives pair up. Each rank acknowledges every call; rank 0 returns a call's latents
  only once every rank has.
* **A failure is the end of the group.** A rank that dies or raises, or rank 0 failing in a
  parallel call, leaves the ranks' collectives out of step. The generator is then *lost*
  (:class:`~streamproc.errors.GeneratorLost`): the batch in flight is abandoned (its records
  stay uncommitted and are delivered again to the partition's next owner), every later
  call fails at once, :meth:`watch` raises so the processor stops the worker with exit
  status 5, and the surviving ranks are killed. During start the same error fails the start.
* **No rank outlives rank 0.** Ranks are spawned from the main thread with SIGINT/SIGTERM
  blocked, then ignore them (the operator's signal reaches rank 0, which drains and stops
  them), arm the parent-death signal, watch their parent, and end when their command pipe
  closes. :meth:`stop` asks them to exit and kills any that have not within seconds.
* **Rank 0 never waits on a stuck collective forever.** Its GPU thread is a daemon thread,
  and every await on it races the rank watcher: a dead rank fails the call at once even if
  the thread stays blocked inside the collective library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, Future
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import structlog
import torch
import torch.distributed as dist
from diffusers import WanPipeline

from streamproc.batching import ShapeKey
from streamproc.errors import ConfigError, GenerationError, GeneratorLost
from streamproc.generation.base import GeneratedBatch, GenerationRequest, StepControl
from streamproc.generation.encode import init_child, terminal_signals_blocked
from streamproc.generation.memory import latent_tokens
from streamproc.generation.runner import StagedRunner
from streamproc.generation.wan import WanGenerator, resolve_device
from streamproc.settings import BatchSettings, GenerationSettings

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Seconds a stopping rank may take to leave before it is killed.
STOP_GRACE_S = 10.0


def free_port() -> int:
    """A TCP port on loopback nobody listens on now (for the group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rank_device(base: torch.device, rank: int) -> torch.device:
    """Rank ``rank``'s device: ``cuda:rank`` on CUDA, the CPU otherwise."""
    return torch.device("cuda", rank) if base.type == "cuda" else torch.device("cpu")


def check_parallel(settings: GenerationSettings, transformer_heads: int | None = None) -> None:
    """ConfigError when ``settings`` cannot run context-parallel here: too few CUDA devices,
    ring attention on the CPU or on a backend without log-sum-exp, heads that do not divide."""
    k = settings.gpus_per_worker
    device = resolve_device(settings.device)
    if device.type == "cuda" and torch.cuda.device_count() < k:
        raise ConfigError(
            f"generation.gpus_per_worker={k} but only {torch.cuda.device_count()} CUDA "
            "device(s) are visible"
        )
    if settings.context_parallel == "ring" and (
        device.type != "cuda" or settings.attention_backend not in _RING_BACKENDS
    ):
        raise ConfigError(
            "generation.context_parallel='ring' needs CUDA and an attention backend that "
            f"returns log-sum-exp ({', '.join(sorted(_RING_BACKENDS))}); use 'ulysses'"
        )
    ulysses = settings.context_parallel == "ulysses"
    if ulysses and transformer_heads is not None and transformer_heads % k:
        raise ConfigError(
            f"Ulysses attention splits heads: {transformer_heads} heads do not divide by "
            f"generation.gpus_per_worker={k}"
        )


#: diffusers attention backends whose forward returns the log-sum-exp ring attention needs.
_RING_BACKENDS = frozenset(
    {"_native_cudnn", "_native_flash", "flash", "flash_hub", "_flash_3_hub", "sage"}
)


def enable_context_parallel(
    transformer: Any, kind: str, rank: int, world: int, device: torch.device
) -> None:
    """Split ``transformer``'s sequence over the ``world`` ranks of the default process group.

    diffusers' ``enable_parallelism`` builds its device mesh for the accelerator and cannot
    place a CPU rank (it takes the rank modulo the accelerator count, zero here); on the CPU
    the mesh is built for ``cpu`` and handed to diffusers' own config instead. Everything else
    — the split and gather hooks of the model's ``_cp_plan`` and the Ulysses / ring attention
    — is diffusers' code, unchanged.
    """
    from diffusers import ContextParallelConfig
    from diffusers.models._modeling_parallel import ParallelConfig
    from torch.distributed.device_mesh import init_device_mesh

    config = (
        ContextParallelConfig(ulysses_degree=world)
        if kind == "ulysses"
        else ContextParallelConfig(ring_degree=world)
    )
    if device.type == "cpu":

        def resolve(cp: Any) -> Any:
            parallel = ParallelConfig(context_parallel_config=cp)
            mesh = init_device_mesh("cpu", cp.mesh_shape, mesh_dim_names=cp.mesh_dim_names)
            parallel.setup(rank, world, device, mesh=mesh)
            transformer._parallel_config = parallel
            return parallel

        transformer._resolve_parallel_config = resolve
    transformer.enable_parallelism(config=config)
    # The runner passes one timestep per video (1-D), which must stay whole; diffusers' hook
    # would log that it does not split it on every transformer call.
    logging.getLogger("diffusers.hooks.context_parallel").setLevel(logging.ERROR)


def join_group(
    rank: int, world: int, init_method: str, device: torch.device, timeout_s: float
) -> None:
    """Join the process group of the worker's ranks (NCCL on CUDA, gloo on the CPU)."""
    timeout = timedelta(seconds=timeout_s)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(
            "nccl",
            init_method=init_method,
            rank=rank,
            world_size=world,
            timeout=timeout,
            device_id=device,
        )
    else:
        dist.init_process_group(
            "gloo", init_method=init_method, rank=rank, world_size=world, timeout=timeout
        )


class DaemonThreadExecutor(Executor):
    """One daemon thread running submitted calls in order: a call stuck in a collective whose
    peer died must not keep the worker's process from exiting (a ThreadPoolExecutor's thread
    is joined at exit)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._shut = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._shut:
            raise RuntimeError("executor shut down")
        future: Future[T] = Future()
        self._jobs.put((future, lambda: fn(*args, **kwargs)))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # outcome: handed to the waiting caller
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._shut:
            self._shut = True
            self._jobs.put(None)
        if wait:
            self._thread.join()


class ContextParallelGenerator(WanGenerator):
    """Rank 0 of a context-parallel worker: a :class:`WanGenerator` whose every denoising
    call runs on all ``gpus_per_worker`` ranks (see the module docstring)."""

    def __init__(
        self,
        settings: GenerationSettings,
        *,
        max_batch_size: int = 4,
        batch: BatchSettings | None = None,
    ) -> None:
        super().__init__(settings, max_batch_size=max_batch_size, batch=batch, on_loaded=self._join)
        self._world = settings.gpus_per_worker
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._pipes: list[Connection] = []
        self._init_method = ""
        self._lost: asyncio.Future[None] | None = None
        self._broken: str | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def world_size(self) -> int:
        """Ranks in the group, rank 0 included."""
        return self._world

    @property
    def rank_pids(self) -> list[int]:
        """Process ids of ranks 1..K-1."""
        return [p.pid for p in self._procs if p.pid is not None]

    def _gpu_executor(self) -> Executor:
        return DaemonThreadExecutor("streamproc-gpu")

    async def start(self) -> None:
        """Spawn the ranks, join the group with them, load and warm up in step with them.
        Raises GeneratorLost (one line naming the rank) when a rank dies meanwhile."""
        if self._procs:
            return
        check_parallel(self._settings)
        if dist.is_initialized():
            raise ConfigError("this process already belongs to a process group")
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._lost.add_done_callback(lambda f: f.cancelled() or f.exception())  # never unretrieved
        self._init_method = f"tcp://127.0.0.1:{free_port()}"
        # The GPU host requires NVLink multicast off; the ranks inherit the environment.
        os.environ["NCCL_NVLS_ENABLE"] = "0"
        self._spawn()
        self._monitor = asyncio.create_task(self._watch_ranks(), name="streamproc-rank-watch")
        try:
            await self._unless_lost(super().start())
        except BaseException:  # outcome: re-raised after the ranks are stopped (start fails)
            await self.stop()
            raise
        log.info(
            "context_parallel_ready", ranks=self._world, attention=self._settings.context_parallel
        )

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        child_settings = self._settings.model_copy(
            update={"gpus_per_worker": 1, "warmup_shapes": [], "compile_cache_dir": None}
        )
        with terminal_signals_blocked():
            for rank in range(1, self._world):
                ours, theirs = context.Pipe()
                proc = context.Process(
                    target=rank_main,
                    args=(
                        rank,
                        self._world,
                        self._init_method,
                        child_settings,
                        self._settings.device,
                        theirs,
                        os.getpid(),
                    ),
                    name=f"streamproc-rank-{rank}",
                    daemon=False,
                )
                proc.start()
                theirs.close()
                self._procs.append(proc)
                self._pipes.append(ours)
        log.info("context_parallel_spawned", ranks=self._world, pids=self.rank_pids)

    def _join(self, pipe: WanPipeline) -> None:
        """On the GPU thread, once rank 0's pipeline is loaded: join the group, split the
        transformer's sequence."""
        device = rank_device(self.device, 0)  # cuda:0 (NCCL needs an index), or the CPU
        timeout = self._settings.rank_timeout_s
        try:
            join_group(0, self._world, self._init_method, device, timeout)
        except Exception as exc:  # outcome: the start fails with this one line
            self._lose(
                f"the {self._world} ranks did not form a group within {timeout:g} s "
                f"(generation.rank_timeout_s): {type(exc).__name__}: {str(exc)[:200]}"
            )
        check_parallel(self._settings, pipe.transformer.config.num_attention_heads)
        enable_context_parallel(
            pipe.transformer, self._settings.context_parallel, 0, self._world, device
        )

    async def watch(self) -> None:
        """Raises GeneratorLost when a rank dies (never returns while the group is whole)."""
        if self._lost is None:
            raise GeneratorLost("context-parallel generator not started")
        await asyncio.shield(self._lost)

    async def generate(
        self,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        control: StepControl | None = None,
    ) -> GeneratedBatch:
        """A batch over every rank. ``control`` reports progress and skips the decode of
        cancelled rows, but never stops the denoising early: all ranks run every step."""
        if self._broken is not None:
            raise GeneratorLost(self._broken)
        if control is not None:
            control.can_stop = False
        return await self._unless_lost(super().generate(shape, requests, control))

    def _latents(
        self,
        runner: StagedRunner,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        stages: dict[str, float],
        control: StepControl | None = None,
    ) -> torch.Tensor:
        """On rank 0's GPU thread: send the call to every rank, run it, wait for their acks."""
        if self._broken is not None:
            raise GeneratorLost(self._broken)
        tokens = latent_tokens(shape)
        if tokens % self._world:
            # Before anything is sent: the ranks stay in step, only these events fail.
            raise GenerationError(
                f"a {shape.width}x{shape.height}x{shape.num_frames} clip has {tokens} latent "
                f"tokens, which do not split evenly over {self._world} GPUs; a one-GPU worker "
                "can make it"
            )
        call = ("latents", shape, list(requests))
        for rank, conn in enumerate(self._pipes, start=1):
            try:
                conn.send(call)
            except OSError as exc:
                # Name the dead rank, as the receiving side does (a broken pipe is its death).
                self._lose(
                    self._dead_rank(wait_s=1.0)
                    or f"rank {rank} of {self._world} stopped listening: {exc}"
                )
        try:
            latents = super()._latents(runner, shape, requests, stages, control)
        except Exception as exc:  # outcome: GeneratorLost -> batch abandoned, worker exits 5
            # A collective that failed because a peer died: name the dead rank, not rank 0.
            # Ranks out of step after a failed call cannot be trusted with the next one.
            self._lose(
                self._dead_rank(wait_s=1.0)
                or f"rank 0 failed in a parallel call: {type(exc).__name__}: {str(exc)[:300]}"
            )
        for rank, conn in enumerate(self._pipes, start=1):
            try:
                answer = conn.recv()
            except (EOFError, OSError):
                self._lose(self._dead_rank(wait_s=1.0) or f"rank {rank} of {self._world} died")
            if answer[0] != "ok":
                self._lose(f"rank {rank} of {self._world} failed: {answer[1]}")
        return latents

    def _lose(self, reason: str) -> Any:
        """Mark the group lost for ``reason`` and raise GeneratorLost (from any thread)."""
        if self._broken is None:
            self._broken = reason
        raise GeneratorLost(self._broken)

    async def _unless_lost(self, work: Awaitable[T]) -> T:
        """``work``'s result, unless a rank dies first: then GeneratorLost at once (``work``
        is cancelled; a GPU thread blocked in a collective is left behind, it is a daemon)."""
        assert self._lost is not None
        task = asyncio.ensure_future(work)
        racing: set[asyncio.Future[Any]] = {task, self._lost}
        try:
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.shield(self._lost)  # raises GeneratorLost
        raise AssertionError("unreachable")

    async def _watch_ranks(self) -> None:
        """Poll the ranks; the first that exits unasked loses the group."""
        assert self._lost is not None
        while not self._stopping:
            reason = self._dead_rank()
            if reason is not None:
                if self._broken is None:
                    self._broken = reason
                log.error("context_parallel_rank_lost", reason=reason)
                self._kill_ranks()
                if not self._lost.done():
                    self._lost.set_exception(GeneratorLost(self._broken))
                return
            await asyncio.sleep(0.1)

    def _dead_rank(self, wait_s: float = 0.0) -> str | None:
        """What ended the first rank found dead (waiting up to ``wait_s`` for one), or None."""
        deadline = time.monotonic() + wait_s
        while True:
            for rank, proc in enumerate(self._procs, start=1):
                if proc.exitcode is not None:
                    return f"rank {rank} of {self._world} (pid {proc.pid}) {_ended(proc.exitcode)}"
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _kill_ranks(self) -> None:
        for proc in self._procs:
            if proc.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    async def stop(self) -> None:
        """Ask every rank to leave, kill those still there after ``STOP_GRACE_S``, release
        rank 0's model; idempotent."""
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        for conn in self._pipes:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc in self._procs:
            await asyncio.to_thread(proc.join, STOP_GRACE_S if self._broken is None else 0.5)
        self._kill_ranks()
        for proc in self._procs:
            await asyncio.to_thread(proc.join, STOP_GRACE_S)
        for conn in self._pipes:
            conn.close()
        self._procs, self._pipes = [], []
        if self._lost is not None and not self._lost.done():
            self._lost.cancel()
        if self._broken is not None and self._gpu is not None:
            # Its thread may be blocked in a collective for good: do not wait for it, and
            # leave the group from a thread of its own, waiting a bounded time.
            self._gpu.shutdown(wait=False)
            self._gpu = None
            leaving = threading.Thread(target=_leave_group, daemon=True)
            leaving.start()
            await asyncio.to_thread(leaving.join, STOP_GRACE_S)
        elif self._gpu is not None and dist.is_initialized():
            await asyncio.wrap_future(self._gpu.submit(_leave_group))
        await super().stop()


def _leave_group() -> None:
    with contextlib.suppress(Exception):  # outcome: leaving at stop; nothing left to run
        dist.destroy_process_group()


def _ended(exitcode: int) -> str:
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def rank_main(
    rank: int,
    world: int,
    init_method: str,
    settings: GenerationSettings,
    device_name: str,
    conn: Connection,
    parent_pid: int,
) -> None:
    """A rank other than 0 (the process's whole life): join the group, load the model, then
    run each call rank 0 sends until it says stop or its pipe closes. Any failure is
    reported to rank 0 and ends the process (the group cannot go on out of step)."""
    init_child(parent_pid)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    device = rank_device(resolve_device(device_name), rank)
    status = 1
    try:
        join_group(rank, world, init_method, device, settings.rank_timeout_s)
        generator = WanGenerator(
            settings.model_copy(update={"device": str(device)}),
            on_loaded=lambda pipe: enable_context_parallel(
                pipe.transformer, settings.context_parallel, rank, world, device
            ),
        )
        asyncio.run(generator.start())
        while True:
            try:
                call = conn.recv()
            except EOFError:  # rank 0 is gone
                break
            if call[0] == "stop":
                status = 0
                break
            _, shape, requests = call
            generator.run_latents(shape, requests)
            conn.send(("ok",))
    except Exception as exc:  # outcome: reported to rank 0, which loses the group
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:500]))
        print(f"streamproc rank {rank}: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        if status == 0:
            _leave_group()
    os._exit(status)
