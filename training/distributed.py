"""Multi-process runs with torch.distributed, as launched by torchrun.

    torchrun --standalone --nproc_per_node=N run.py --mode train ...          # one machine
    torchrun --nnodes=M --node_rank=K --nproc_per_node=N \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT run.py --mode train ...  # M machines

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous variables; `init()` reads them
and starts the process group (nccl on CUDA, gloo otherwise). Without them everything runs in
one process (`world_size == 1`) and none of the collectives below does anything.

Work sharding: `shard(n, rank, world)` gives each rank a contiguous slice of `range(n)`;
`gather_rows` collects per-rank results on every rank (all_gather, which gloo and nccl both
have) in global order. Results never depend on the process count when each item carries its
own seed (per-sample seeds in sampling).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

import torch
from configs.errors import InputError
from .threads import auto_threads, cpu_count, idle_cpus


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment (1 process without it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise InputError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from None
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank, world, local)


def thread_share(requested: int) -> tuple:
    """(threads, note) for this process. `requested` = -1 (auto): the CPUs idle at start
    (`training.threads`; the training loop then follows the load), so a run started beside a busy
    process does not spin threads against it (measured here: 2 threads beside other jobs trained at a fraction of 1 thread's
    rate, docs/bench/demo.md). Under torchrun every request is capped at this process's share of
    the node's CPUs (LOCAL_WORLD_SIZE), since oversubscribed intra-op threads spin against each
    other (two 2-thread processes on 2 cores trained 100x slower than two 1-thread ones). `note`
    says what was lowered and why ("" if nothing)."""
    try:
        local_world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_world = 1
    cpus = cpu_count()
    share = max(1, cpus // local_world)
    if requested == -1:
        if local_world > 1:         # the ranks share the node: each takes its share, no measurement
            return share, ""
        idle = idle_cpus()
        threads = auto_threads(cpus, idle)
        note = "" if threads == cpus else (f"note: {idle:.1f} of {cpus} CPUs idle at start: {threads} torch "
                                           f"thread(s) (training.num_threads=-1, auto; set it to fix the count)")
        return threads, note
    if local_world > 1 and requested > share:
        return share, (f"note: config.training.num_threads={requested} lowered to {share} per process "
                       f"({local_world} processes on {cpus} CPUs)")
    return requested, ""


def init(device: torch.device) -> DistInfo:
    """Start the process group when launched by torchrun (idempotent); return this process's place."""
    info = env_world()
    if info.world_size == 1:
        return info
    import torch.distributed as dist
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    info.backend = dist.get_backend()
    return info


def shutdown() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistInfo:
    """This process's place in the running process group (1 process if none)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                        dist.get_backend())
    return DistInfo()


def barrier() -> None:
    if current().enabled:
        import torch.distributed as dist
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """`obj` from rank `src` on every rank (any picklable object)."""
    if not current().enabled:
        return obj
    import torch.distributed as dist
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj) -> List:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    info = current()
    if not info.enabled:
        return [obj]
    import torch.distributed as dist
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no-op in one process)."""
    if current().enabled:
        import torch.distributed as dist
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def shard(n: int, rank: int, world_size: int) -> range:
    """Rank `rank`'s contiguous slice of range(n): sizes differ by at most one."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def gather_rows(x: torch.Tensor, counts: List[int]) -> torch.Tensor:
    """Concatenate every rank's rows in rank order on every rank. `counts[r]` is rank r's row
    count (all ranks must agree on it); rows are padded to the largest count for all_gather."""
    info = current()
    if not info.enabled:
        return x
    import torch.distributed as dist
    m = max(counts)
    pad = torch.zeros((m, *x.shape[1:]), dtype=x.dtype, device=x.device)
    pad[:x.shape[0]] = x
    parts = [torch.empty_like(pad) for _ in range(info.world_size)]
    dist.all_gather(parts, pad.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


def sample_seeds(seed: int, start: int, stop: int) -> List[int]:
    """The per-sample seeds of samples start..stop-1 of a run seeded `seed`: sample i gets the
    same noise whichever process, batch or batch size draws it."""
    return [int(seed) * 1_000_003 + i for i in range(start, stop)]
