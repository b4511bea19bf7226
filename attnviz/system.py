"""What machine a figure was measured on (for model cards and benchmark reports)."""
from __future__ import annotations

import os
import platform

import torch


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device=None) -> dict:
    """CPU, cores, torch threads and version, Python, platform, and the GPU when one is used."""
    device = torch.device(device) if device is not None else None
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}
    if device is not None:
        info["device"] = str(device)
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device if device is not None else 0)
    return info
