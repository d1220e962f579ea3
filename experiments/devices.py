"""Devices: parse `auto | cpu | cpu:0,1 | gpu | gpu:0 | gpu:0,1` and count GPUs without importing mxnet.

The launcher (and the dashboard's machine panel) must not import mxnet, so GPU discovery goes through NVML or
`nvidia-smi`; the worker checks again with MXNet itself (`check_device`), since a CPU build of MXNet sees no GPU
even on a GPU machine.
"""
from __future__ import annotations

import os
import shutil
import subprocess


def parse_device(spec: str) -> tuple[str, list[int]]:
    """('cpu'|'gpu'|'auto', device ids). `cpu` -> ('cpu', [0]); `gpu` -> ('gpu', []) meaning all GPUs."""
    kind, _, ids = spec.partition(":")
    return kind, [int(i) for i in ids.split(",")] if ids else ([0] if kind == "cpu" else [])


def visible_gpu_count() -> int:
    """NVIDIA GPUs on this machine (NVML, else nvidia-smi, else 0). Respects CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except Exception:
            return 0
    return 0


def mxnet_gpu_count() -> int:
    """GPUs MXNet itself can use: 0 with a CPU build whatever the hardware."""
    import mxnet as mx

    if not mx.runtime.Features().is_enabled("CUDA"):
        return 0
    return mx.context.num_gpus()


def check_distinct(spec: str) -> None:
    """Raise ValueError when a device list names a device twice (`cpu:0,0`): MXNet would hold two replicas of the
    net on one device."""
    _, ids = parse_device(spec)
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"device '{spec}' names {spec.partition(':')[0]}:{repeated[0]} more than once; list each "
                         "device once")


def check_device(spec: str, gpu_count: int | None = None) -> None:
    """Raise ValueError with a clear message when the device repeats a device or asks for GPUs that are not there.
    Without GPUs visible to NVML/nvidia-smi this needs no mxnet; with some, MXNet is asked (a CPU build sees none)."""
    check_distinct(spec)
    kind, ids = parse_device(spec)
    if kind != "gpu":
        return
    check_gpu_capability(ids)
    if gpu_count is None:
        gpu_count = mxnet_gpu_count() if visible_gpu_count() else 0
    if gpu_count == 0:
        raise ValueError(f"device '{spec}' asks for a GPU, but MXNet sees none (CPU build of MXNet, or no NVIDIA GPU "
                         "on this machine); use device = \"cpu\" or \"auto\", or install mxdash[gpu] on a GPU machine")
    missing = [i for i in ids if i >= gpu_count]
    if missing:
        raise ValueError(f"device '{spec}' asks for GPU {missing[0]}, but only {gpu_count} GPU(s) are visible "
                         f"(gpu:0..gpu:{gpu_count - 1})")


def check_gpu_capability(ids: list[int]) -> None:
    """Refuse GPUs this MXNet build cannot run kernels on (Hopper/Blackwell with a 1.9.1 wheel, a CPU build on a GPU
    machine), with the fix; `mxdash doctor` tells the same. No answer from NVML/nvidia-smi: nothing to refuse."""
    from experiments.doctor import gpu_refusal

    message = gpu_refusal(ids)
    if message:
        raise ValueError(message)


def contexts(spec: str, gpu_ids: list[int] | None = None):
    """MXNet contexts for a device spec (called in the worker). `gpu_ids` = GPUs assigned by the scheduler."""
    import mxnet as mx

    check_distinct(spec)
    kind, ids = parse_device(spec)
    if kind == "auto":
        n = mxnet_gpu_count()
        kind, ids = ("gpu", list(range(n))) if n else ("cpu", [0])
    if kind == "gpu":
        if gpu_ids:  # the scheduler pinned this run to specific GPUs
            ids = gpu_ids
        ids = ids or list(range(mxnet_gpu_count()))
        check_device(f"gpu:{','.join(map(str, ids))}")
        return [mx.gpu(i) for i in ids]
    return [mx.cpu(i) for i in ids]
