"""Process layout of a job: rank, world size, device, barrier and gather, from Accelerate's `PartialState`.

`anyecg profile` runs as one process, or as N processes started by `accelerate launch` (or `torchrun`): each
process is one rank and handles a disjoint slice of the inputs (`shard`). On a machine without GPUs the processes
talk over gloo; `PartialState(cpu=True)` is what makes Accelerate set that up (without it, processes launched on a
CPU-only machine would each believe they are alone and all do the whole job).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

# Ranks wait at a barrier while rank 0 plans the job (walks the archive) and while the slowest rank finishes.
DEFAULT_TIMEOUT = timedelta(hours=6)


def launched_world_size() -> int:
    for key in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 1


@dataclass
class DistContext:
    """What a process needs to know about the job's processes.

    Attributes:
        rank (`int`): this process's index (0 = main process, which plans, merges and prints).
        world_size (`int`): number of processes.
        local_rank (`int`): index on this machine (picks the GPU).
        local_world_size (`int`): processes on this machine.
        device (`torch.device`): the device Accelerate assigned to this process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: object = None
    _state: object = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (no-op for one process)."""
        if self.world_size > 1:
            self._state.wait_for_everyone()

    def gather(self, obj) -> list:
        """Every process's `obj`, in rank order, on every process."""
        if self.world_size == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def close(self) -> None:
        """Tear the process group down (ends the job cleanly under `accelerate launch`/`torchrun`)."""
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def init_distributed(device: str | None = None, timeout: timedelta = DEFAULT_TIMEOUT) -> DistContext:
    """Set up (or join) the job's processes with Accelerate.

    Args:
        device (`str`, *optional*): `"cpu"` forces CPU processes (gloo); `None` lets Accelerate choose (one GPU per
            process when there are GPUs, else CPU).
        timeout (`timedelta`): how long a collective may wait for the other processes.

    Raises:
        RuntimeError: the launcher started several processes but they could not form one job.
    """
    import torch

    launched = launched_world_size()
    if launched <= 1:
        # One process: no process group, no Accelerate state needed.
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistContext(device=dev)

    from accelerate import PartialState

    cpu = device == "cpu" or not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    state = PartialState(cpu=cpu, timeout=timeout)
    if state.num_processes != launched:
        raise RuntimeError(
            f"the launcher started {launched} processes but Accelerate joined {state.num_processes}; every process "
            "would do the whole job. On CPU use `accelerate launch --multi_gpu --num_processes N` or `torchrun`."
        )
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
    dev = torch.device(device) if device and device != "cpu" and ":" in device else (
        torch.device("cpu") if cpu else state.device
    )
    return DistContext(
        rank=state.process_index,
        world_size=state.num_processes,
        local_rank=max(state.local_process_index, 0),
        local_world_size=local_world,
        device=dev,
        _state=state,
    )


def shard(n: int, rank: int, world_size: int) -> range:
    """Positions `rank, rank + world_size, ...` of a list of `n` items: disjoint across ranks, covering all
    positions, balanced to within one item, and independent of timing (round robin)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return range(rank, n, world_size)
