"""Data parallelism for SQL-GRPO: one process per GPU (or CPU process), started by ``accelerate
launch`` or ``torchrun``; accelerate's ``PartialState`` reads the launcher's environment and sets up
the process group (NCCL on GPUs, gloo on CPUs). Alone, everything here is a no-op.

Why not wrap the policy in DistributedDataParallel: DDP all-reduces at every backward pass and
needs every process to run the same number of them, while a SQL-GRPO step is ragged by design
(CADR gives each prompt its own number of rollouts, and a process may keep none after skipping
prompts whose original times out). So each process accumulates its own gradients over its
rollouts, and one all-reduce per optimizer step averages them; every process then takes the same
step from the same weights, and the replicas stay identical.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class World:
    """The processes of one training run, as accelerate sees them."""

    def __init__(self) -> None:
        from accelerate import PartialState

        self._state = PartialState(cpu=not torch.cuda.is_available())
        self.rank: int = self._state.process_index
        self.size: int = self._state.num_processes
        self.device: torch.device = self._state.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """The mean over processes of each parameter's gradient (a missing one counts as zero)."""
        if self.size == 1:
            return
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= self.size

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every process, in rank order (picklable values)."""
        if self.size == 1:
            return [value]
        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()
