"""CPU, memory and NVIDIA GPU use for the top bar: psutil, and pynvml when it imports and initialises."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GpuStatus:
    index: int
    name: str
    util: float  # percent
    mem_used: float  # bytes
    mem_total: float


@dataclass
class MachineStatus:
    cpu: float  # percent, all cores
    mem_used: float
    mem_total: float
    gpus: list[GpuStatus] = field(default_factory=list)


class MachineProbe:
    """CPU and memory from psutil; NVIDIA GPUs from pynvml when it imports and initialises, else none."""

    def __init__(self) -> None:
        self._nvml = None
        self._nvml_tried = False

    def _gpus(self) -> list[GpuStatus]:
        if not self._nvml_tried:
            self._nvml_tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception:
                self._nvml = None
        nvml = self._nvml
        if nvml is None:
            return []
        gpus = []
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                name = nvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else str(name)
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                gpus.append(GpuStatus(i, name, float(util), float(mem.used), float(mem.total)))
        except Exception:
            return []
        return gpus

    def __call__(self) -> MachineStatus:
        import psutil

        mem = psutil.virtual_memory()
        return MachineStatus(cpu=psutil.cpu_percent(interval=None), mem_used=float(mem.total - mem.available),
                             mem_total=float(mem.total), gpus=self._gpus())
