"""Multi-process training on PyTorch's own engine: ``torchrun --nproc_per_node=N -m cnnlab train``.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; we join the process group (gloo on CPU, nccl on
GPU), wrap the model in DistributedDataParallel, give every rank its shard of each global batch
(see Loader) and let rank 0 alone write files. torchrun's agent ends every worker when one fails,
and a collective timeout bounds how long a survivor waits, so a failed rank ends the job.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(timeout_s: float | None = None) -> DistInfo:
    """Join the process group when launched by torchrun; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        timeout = datetime.timedelta(
            seconds=timeout_s or float(os.environ.get("CNNLAB_DIST_TIMEOUT", "300")))
        dist.init_process_group(backend=backend, timeout=timeout)
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
    return DistInfo(rank, world, local_rank)


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    # DDP's constructor broadcasts rank 0's weights: a peer that already failed (say, rank 0
    # refused an --out that holds a run) must end this rank with one line too
    return _collective(info, DDP, model,
                       [info.local_rank] if torch.cuda.is_available() else None)


def _collective(info: DistInfo, fn, *args):
    """Run a collective; a peer that died becomes one clear TrainingError, not a gloo traceback."""
    try:
        return fn(*args)
    except (RuntimeError, dist.DistError) as exc:
        from ..errors import TrainingError

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(
            f"rank {info.rank}/{info.world_size}: another process of this job failed or stopped "
            f"answering ({first[:160]}); ending this one") from exc


def all_ok(ok: bool, info: DistInfo) -> bool:
    """True only if every rank says ok (so one rank's bad loss stops all ranks together)."""
    if not info.enabled:
        return ok
    flag = torch.tensor([0.0 if ok else 1.0])
    _collective(info, dist.all_reduce, flag)
    return flag.item() == 0.0


def _share(n: int, info: DistInfo) -> int:
    """Rows per rank when ``n`` rows are split in contiguous shares (ceil(n / world))."""
    return -(-n // info.world_size)


def shard_bounds(n: int, info: DistInfo) -> tuple[int, int]:
    """This rank's contiguous share ``[lo, hi)`` of ``n`` rows (the last ones may be shorter)."""
    per = _share(n, info)
    lo = min(n, info.rank * per)
    return lo, min(n, lo + per)


def gather_rows(part: torch.Tensor, n: int, info: DistInfo) -> torch.Tensor:
    """Every rank's rows of :func:`shard_bounds`, concatenated in order, on every rank.

    Why: under torchrun each rank runs one thread, so evaluating the whole test set on every
    rank would take the full time on one core; each rank scores its share and they swap.
    """
    if not info.enabled:
        return part
    padded = part.new_zeros((_share(n, info), *part.shape[1:]))
    padded[:len(part)] = part
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    _collective(info, dist.all_gather, parts, padded)
    return torch.cat(parts)[:n]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        _collective(info, dist.barrier)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
