"""The torch device a run or a bench asks for by name ("auto", "cpu", "cuda"), checked in the user's terms."""
from __future__ import annotations

import torch

from .config import ConfigError, RunConfig
from .wording import count


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def check_cuda_graph(config: RunConfig) -> None:
    """cuda_graph "on" needs CUDA: said before anything is written, in the user's terms."""
    device = pick_device(config.device)
    if config.cuda_graph == "on" and device.type != "cuda":
        raise ConfigError(f"cuda_graph = 'on' needs a CUDA device, but this run is on {device} (device "
                          f"{config.device!r}, torch sees {count(torch.cuda.device_count(), 'GPU')}); valid here: "
                          f"cuda_graph auto (graphs on CUDA, eager elsewhere) or off (--cuda_graph, or cuda_graph: "
                          f"in a jobs file), or run it on a GPU node")
