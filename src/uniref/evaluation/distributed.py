"""Process groups for evaluation under ``torchrun``: strided shares of the work, object gathers, and errors
that reach every rank instead of leaving the others waiting at a barrier.

Only small Python objects travel (evaluator states, per-object scores, error messages), so the group
always uses the ``gloo`` backend, on CPU and GPU machines alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

__all__ = ["DistContext", "gather_collectively", "init_distributed", "run_collectively"]

T = TypeVar("T")

# A rank that finishes its share early waits at the next collective for the slowest one; a long video
# benchmark can take hours, well past gloo's default 30 minutes.
COLLECTIVE_TIMEOUT = timedelta(hours=48)


@dataclass
class DistContext:
    """Where this process stands in the group. A single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's strided share: items ``rank, rank + world_size, ...``."""
        return list(items[self.rank :: self.world_size])

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Destroy the group if this context created it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def init_distributed() -> DistContext:
    """Join the ``torchrun`` group described by ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
        owns = True
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       owns_group=owns)


class RemoteRankError(RuntimeError):
    """Another rank failed; this one stops too."""


def _kind(error: BaseException) -> str:
    for kind in (FileNotFoundError, NotADirectoryError, PermissionError, ValueError):
        if isinstance(error, kind):
            return kind.__name__
    return "RuntimeError"


_KINDS: dict[str, type[Exception]] = {
    "FileNotFoundError": FileNotFoundError,
    "NotADirectoryError": NotADirectoryError,
    "PermissionError": PermissionError,
    "ValueError": ValueError,
    "RuntimeError": RemoteRankError,
}


def _exchange(ctx: DistContext, step: Callable[[], T], share: bool) -> tuple[T, list[Any]]:
    try:
        result, error = step(), None
    except Exception as exc:  # re-raised below, after the other ranks have been told
        result, error = None, exc
    if not ctx.distributed:
        if error is not None:
            raise error
        return result, [result]  # type: ignore[return-value]
    report = None if error is None else (_kind(error), str(error))
    reports = ctx.all_gather((report, result if share else None))
    if error is not None:
        raise error
    for rank, (other, _) in enumerate(reports):
        if other is not None:
            kind, message = other
            raise _KINDS[kind](f"{message} (on rank {rank})")
    return result, [value for _, value in reports]  # type: ignore[return-value]


def run_collectively(ctx: DistContext, step: Callable[[], T]) -> T:
    """Run ``step`` on every rank, then make every rank fail if any rank failed; returns this rank's result.

    Without this, a rank that raises (a missing annotation in its share, say) would leave the others
    blocked at the next collective. Other ranks re-raise the error as the same kind (file, value or
    runtime error) with the failing rank's message, so the command line reports it the same way.
    It doubles as a barrier.
    """
    return _exchange(ctx, step, share=False)[0]


def gather_collectively(ctx: DistContext, step: Callable[[], T]) -> list[T]:
    """Like :func:`run_collectively`, and every rank gets every rank's result, in rank order."""
    return _exchange(ctx, step, share=True)[1]
