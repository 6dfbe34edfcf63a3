"""Where and how one process trains: the device, the precision, its rank in a
``torchrun`` group (DistributedDataParallel: NCCL on GPUs, gloo on CPU), and the sums of
loss and accuracy every rank adds up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.api.errors import BadInputError
from harness.pretext.config import PretrainConfig
from harness.runtime.devices import resolve_device, resolve_precision


@dataclass(frozen=True)
class Runtime:
    """Where and how this process trains."""

    device: torch.device
    rank: int
    world: int
    #: bf16 autocast on, or off (fp32)
    bf16: bool
    channels_last: bool
    #: True if this process started the process group (and must end it)
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(config: PretrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(resolve_device(config.device))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if config.batch_size % world:
        raise BadInputError(f"batch size {config.batch_size} does not split evenly over "
                            f"{world} processes")
    owns_group = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns_group = True
    bf16 = resolve_precision(config.precision, str(device))
    return Runtime(device=device, rank=rank, world=world, bf16=bf16,
                   channels_last=config.channels_last, owns_group=owns_group)


def wrap_model(config: PretrainConfig, rt: Runtime, net: torch.nn.Module) -> torch.nn.Module:
    """The module the steps call: DDP across ranks, compiled when asked."""
    model: torch.nn.Module = net
    if rt.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    return model


class Meter:
    """Sums of loss, correct predictions and counts, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device):
        #: loss x images, correct predictions, predictions, images
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, correct: torch.Tensor, count: int, images: int) -> None:
        self.sums[0] += loss.detach().double() * images
        self.sums[1] += correct.double()
        self.sums[2] += count
        self.sums[3] += images

    def reduce(self, world: int) -> tuple[float, float]:
        """(mean loss per image, accuracy) over every rank."""
        sums = self.sums.clone()
        if world > 1:
            dist.all_reduce(sums)
        loss_sum, correct, count, images = sums.tolist()
        return loss_sum / max(images, 1), correct / max(count, 1)

