"""Multi-process training through Lightning's DDP: who writes the run folder, and threads per process.

Lightning launches the other local processes by re-running the same command with ``LOCAL_RANK`` set
(``--strategy ddp``); torchrun sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` and SLURM ``SLURM_PROCID`` for every
process. Only the process of global rank 0 writes the run folder; the others train in a scratch folder and
never write into the run (Lightning broadcasts rank 0's checkpoint folder and saves on rank 0 only).

    imgclf train --dataset cifar10 --devices 2 --accelerator cpu --strategy ddp       # 2 processes, gloo
    torchrun --nproc-per-node 4 -m imgclf train --dataset cifar10 --devices 4 --name c10
    srun --ntasks-per-node 4 imgclf train --dataset cifar10 --devices 4 --num-nodes 2 --name c10   # SLURM
"""

from __future__ import annotations

import os


def is_writer() -> bool:
    """True for the one process that writes the run folder: global rank 0 as the launcher set it."""
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var]) == 0
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return node == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def threads_per_process(threads: int | None, devices: int, accelerator: str) -> int:
    """Explicit threads, else the cores shared among the local CPU processes (2 DDP processes on 2 cores: 1 each)."""
    if threads:
        return threads
    cores = os.cpu_count() or 1
    return max(1, cores // devices) if accelerator == "cpu" and devices > 1 else cores
