"""`mxdash doctor`: what this machine can run, in one screen, and for each problem the fix.

Python, numpy, MXNet and its build features, each NVIDIA GPU (NVML, else nvidia-smi) and whether this MXNet build can
run kernels on it, Ray and the cluster it would join. Facts are gathered by small functions that tests replace with
injected answers (an NVML module, an mxnet module, kernel-trial results); `diagnose` turns facts into findings.

The same knowledge refuses `device = "gpu..."` on a GPU the build cannot drive before any run is created
(`gpu_refusal`, called from `experiments.devices.check_device`).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass

# GPU architectures the MXNet 1.9.1 wheels carry machine code for (MXNET_CUDA_ARCH in apache/mxnet
# config/distribution/linux_cu*.cmake; mxnet-cu117's libmxnet.so parsed: 197 fat binaries, sm_50/60/70/80/86, no
# PTX). With no PTX the driver has nothing to JIT: a GPU runs a build only if the build has code for the GPU's major
# version at a minor <= the GPU's (sm_89 runs sm_86 code; Hopper sm_90 and Blackwell sm_100/120 run nothing).
_AMPERE = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
WHEEL_ARCHS = {
    "mxnet-cu101": ((3, 0), (5, 0), (6, 0), (7, 0), (7, 5)), "mxnet-cu102": ((3, 0), (5, 0), (6, 0), (7, 0), (7, 5)),
    "mxnet-cu110": ((5, 0), (6, 0), (7, 0), (8, 0)),
    **{f"mxnet-cu11{minor}": _AMPERE for minor in range(1, 8)},
}
CONTAINER_FIX = ("use NVIDIA's NGC MXNet container 24.05 or 24.06 (MXNet 1.9.1 built with CUDA 12.4 for Hopper; "
                 "Python 3.10; driver >= 545): `docker run --gpus all -it -v $PWD:/work "
                 "nvcr.io/nvidia/mxnet:24.06-py3`, then inside it `pip install -e /work` with no [cpu] or [gpu] "
                 "extra, so pip keeps the container's MXNet")
GPU_BUILD_FIX = ('pip uninstall -y mxnet && pip install -e ".[gpu]" (mxnet-cu112: needs CUDA 11.2, cuDNN 8 and NCCL 2 '
                 "on the system, or the nvidia-*-cu11 wheels on LD_LIBRARY_PATH)")
TRIAL = ("import sys, mxnet as mx\n"
         "a = mx.nd.ones((4, 4), ctx=mx.gpu(int(sys.argv[1])))\n"
         "print(float((a * 2).sum().asscalar()))\n")

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "--"


@dataclass
class Finding:
    check: str
    status: str  # ok | warn | FAIL | --
    detail: str
    fix: str | None = None


# -- facts ------------------------------------------------------------------------------------------------------------
def arch(capability) -> str:
    return f"sm_{capability[0]}{capability[1]}"


def build_runs_on(archs, capability) -> bool:
    """Cubin compatibility without PTX: same major version, build's minor <= the GPU's."""
    major, minor = capability
    return any(a_major == major and a_minor <= minor for a_major, a_minor in archs)


def mxnet_build(mx=None, distribution: str | None = None) -> dict:
    """What the installed MXNet is: version, PyPI distribution (tells the wheel's GPU archs), features, GPU count."""
    try:
        if mx is None:
            import mxnet as mx
    except Exception as e:  # e.g. numpy >= 1.24: AttributeError np.bool
        return {"importable": False, "error": f"{type(e).__name__}: {e}"}
    features = mx.runtime.Features()
    names = ("CUDA", "CUDNN", "NCCL", "MKLDNN", "OPENMP", "DIST_KVSTORE")
    enabled = {name: bool(features.is_enabled(name)) for name in names if name in features}
    gpus = mx.context.num_gpus() if enabled.get("CUDA") else 0
    return {"importable": True, "version": mx.__version__, "distribution": distribution or mxnet_distribution(),
            "features": enabled, "gpus": gpus}


def mxnet_distribution() -> str | None:
    """The pip package that installed `mxnet/` (mxnet, mxnet-cu112, ...), None when not from pip (e.g. NGC)."""
    from importlib import metadata

    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "mxnet" or name.startswith("mxnet-cu"):
            return name
    return None


def build_archs(build: dict):
    """The GPU archs of a known wheel, None when unknown (built elsewhere: only a kernel trial can tell)."""
    return WHEEL_ARCHS.get(build.get("distribution") or "")


def nvml_gpus(nvml=None) -> dict:
    """{"gpus": [{index, name, capability, memory_gib, driver}], "source": ...} or {"gpus": [], "error": why}."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return nvidia_smi_gpus("NVML: nvidia-ml-py not installed")
    try:
        nvml.nvmlInit()
    except Exception as e:
        return {"gpus": [], "source": "NVML", "error": f"NVML: {e}"}
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append({"index": i, "name": _text(nvml.nvmlDeviceGetName(handle)),
                         "capability": tuple(nvml.nvmlDeviceGetCudaComputeCapability(handle)),
                         "memory_gib": nvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30, "driver": driver})
        return {"gpus": gpus, "source": "NVML"}
    finally:
        nvml.nvmlShutdown()


def nvidia_smi_gpus(why: str) -> dict:
    if not shutil.which("nvidia-smi"):
        return {"gpus": [], "source": None, "error": f"{why}; nvidia-smi not found"}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,compute_cap,memory.total,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except Exception as e:
        return {"gpus": [], "source": "nvidia-smi", "error": f"nvidia-smi: {e}"}
    if out.returncode != 0:
        return {"gpus": [], "source": "nvidia-smi", "error": f"nvidia-smi: {out.stderr.strip() or out.stdout}"}
    gpus = []
    for line in out.stdout.strip().splitlines():
        index, name, cap, memory, driver = [part.strip() for part in line.split(",")]
        major, _, minor = cap.partition(".")
        gpus.append({"index": int(index), "name": name, "capability": (int(major), int(minor or 0)),
                     "memory_gib": float(memory) / 1024, "driver": driver})
    return {"gpus": gpus, "source": "nvidia-smi"}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def kernel_trial(index: int, timeout: float = 180.0) -> tuple[bool, str]:
    """Run a tiny op on GPU `index` in a fresh process (a failing CUDA op can leave a process unusable)."""
    try:
        out = subprocess.run([sys.executable, "-c", TRIAL, str(index)], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"a 4x4 op on gpu({index}) did not finish in {timeout:.0f} s"
    if out.returncode == 0 and out.stdout.strip().endswith("32.0"):
        return True, "a 4x4 op ran"
    return False, _error_line(out.stderr or out.stdout) or f"exit code {out.returncode}"


def _error_line(text: str) -> str:
    """The line of an MXNet/CUDA failure worth showing (e.g. "no kernel image is available ...")."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Check failed" in line or "CUDA" in line or "Error" in line or "error" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""


def ray_facts() -> dict:
    try:
        import ray
    except ImportError:
        return {"installed": False}
    facts = {"installed": True, "version": ray.__version__, "address": None, "reachable": False}
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        try:
            from ray._private.services import find_bootstrap_address

            address = find_bootstrap_address(None)  # what `ray start` recorded (/tmp/ray/ray_current_cluster)
        except Exception:
            address = None
    if address and ":" in address and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            facts["reachable"] = True
        except (OSError, ValueError):
            pass
    facts["address"] = address
    return facts


def gather(nvml=None, mx=None, trials: dict | None = None, ray: dict | None = None) -> dict:
    """All facts; each piece can be injected. Kernel trials run only for GPUs a CUDA build of MXNet sees."""
    build = mxnet_build(mx)
    gpus = nvml_gpus(nvml)
    if trials is None:
        trials = {}
        if build.get("features", {}).get("CUDA"):
            for gpu in gpus["gpus"]:
                if gpu["index"] < build.get("gpus", 0):
                    trials[gpu["index"]] = kernel_trial(gpu["index"])
    numpy_version = None
    try:
        import numpy

        numpy_version = numpy.__version__
    except Exception:
        pass
    return {"python": platform.python_version(), "executable": sys.executable, "numpy": numpy_version,
            "mxnet": build, "nvml": gpus, "trials": trials, "ray": ray if ray is not None else ray_facts(),
            "cores": os.cpu_count()}


# -- findings ---------------------------------------------------------------------------------------------------------
def diagnose(facts: dict) -> list[Finding]:
    findings = [python_finding(facts), numpy_finding(facts["numpy"]), mxnet_finding(facts["mxnet"]),
                Finding("CPU", OK, f"{facts['cores']} cores (a sweep splits them: OpenMP threads = cores / runs at "
                                   "a time)")]
    findings += gpu_findings(facts["mxnet"], facts["nvml"], facts.get("trials") or {})
    findings.append(ray_finding(facts["ray"]))
    return findings


def python_finding(facts: dict) -> Finding:
    version = tuple(int(p) for p in facts["python"].split(".")[:2])
    if (3, 8) <= version < (3, 12):
        return Finding("Python", OK, f"{facts['python']}  {facts['executable']}")
    return Finding("Python", FAIL, f"{facts['python']}: MXNet 1.9.1 needs numpy 1.23, which has no wheels past 3.11",
                   "use Python 3.8-3.11 (e.g. python3.11 -m venv .venv)")


def numpy_finding(version: str | None) -> Finding:
    if version is None:
        return Finding("numpy", FAIL, "not installed", 'pip install -e ".[cpu]"')
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    if major_minor >= (1, 24):
        return Finding("numpy", FAIL, f"{version}: MXNet 1.9.1 breaks on numpy >= 1.24 (np.bool was removed)",
                       'pip install "numpy>=1.23,<1.24"')
    return Finding("numpy", OK, version)


def mxnet_finding(build: dict) -> Finding:
    if not build.get("importable"):
        return Finding("MXNet", FAIL, f"does not import: {build.get('error', 'not installed')}",
                       'pip install -e ".[cpu]" (or ".[gpu]"), with numpy<1.24')
    features = build["features"]
    names = {"CUDA": "CUDA", "CUDNN": "cuDNN", "NCCL": "NCCL", "MKLDNN": "oneDNN", "OPENMP": "OpenMP",
             "DIST_KVSTORE": "dist kvstore"}
    on = [names[k] for k, v in features.items() if v]
    off = [names[k] for k in ("CUDA", "CUDNN", "NCCL", "MKLDNN") if k in features and not features[k]]
    kind = "GPU build" if features.get("CUDA") else "CPU build"
    detail = f"{build['version']} ({build.get('distribution') or 'not from pip'}, {kind}): {', '.join(on) or '-'}"
    if off:
        detail += f"; no {', '.join(off)}"
    if not features.get("MKLDNN"):
        return Finding("MXNet", WARN, detail, "a build without oneDNN trains 2-4x slower on CPU (FACTS: "
                                              "MXNET_MKLDNN_ENABLED=0); use the pip wheel")
    return Finding("MXNet", OK, detail)


def gpu_findings(build: dict, nvml: dict, trials: dict) -> list[Finding]:
    gpus = nvml.get("gpus") or []
    if not gpus:
        why = nvml.get("error") or "NVML reports none"
        return [Finding("GPUs", INFO, f"none found ({why}): runs use the CPU")]
    cuda = bool(build.get("features", {}).get("CUDA"))
    archs = build_archs(build) if cuda else None
    findings = []
    for gpu in gpus:
        check = f"GPU {gpu['index']}"
        detail = (f"{gpu['name']}, {arch(gpu['capability'])}, {gpu['memory_gib']:.0f} GiB, "
                  f"driver {gpu['driver']}")
        verdict = gpu_verdict(build, gpu, archs, trials.get(gpu["index"]))
        findings.append(Finding(check, verdict[0], f"{detail}: {verdict[1]}", verdict[2]))
    return findings


def gpu_verdict(build: dict, gpu: dict, archs, trial) -> tuple[str, str, str | None]:
    """(status, why, fix) for one GPU and this MXNet build."""
    hopper_or_newer = gpu["capability"] >= (9, 0)
    if not build.get("importable"):
        return INFO, "MXNet does not import", None
    if not build["features"].get("CUDA"):
        return (WARN, "MXNet here is a CPU build, so this GPU is unused",
                CONTAINER_FIX if hopper_or_newer else GPU_BUILD_FIX)
    if archs is not None and not build_runs_on(archs, gpu["capability"]):
        listed = ", ".join(arch(a) for a in archs)
        return (FAIL, f"this build ({build['distribution']}) has kernels for {listed} only, no PTX: every GPU op "
                      "fails with \"no kernel image is available\"", CONTAINER_FIX)
    if trial is not None and not trial[0]:
        fix = CONTAINER_FIX if hopper_or_newer or "kernel image" in trial[1] else (
            "install the CUDA 11 runtime libraries the wheel links (libcudart 11, cuBLAS, cuDNN 8, NCCL 2), "
            "or the nvidia-*-cu11 wheels on LD_LIBRARY_PATH")
        return FAIL, f"a tiny op failed: {trial[1]}", fix
    nearest = None
    if archs is not None:
        nearest = max(a for a in archs if a[0] == gpu["capability"][0] and a <= gpu["capability"])
    runs = f"runs {arch(nearest)} code" if nearest and nearest != gpu["capability"] else "runs"
    if trial is not None:
        return OK, f"{runs}; {trial[1]}", None
    return OK, f"{runs} (by the build's arch list; no kernel trial)", None


def ray_finding(ray: dict) -> Finding:
    if not ray.get("installed"):
        return Finding("Ray", INFO, "not installed: `--cluster ray` unavailable",
                       'pip install -e ".[cpu,cluster]" (on every node) for sweeps across machines')
    if ray.get("address") and ray.get("reachable"):
        return Finding("Ray", OK, f"{ray['version']}; `--cluster ray` joins {ray['address']}")
    if ray.get("address"):
        return Finding("Ray", WARN, f"{ray['version']}; the cluster recorded at {ray['address']} does not answer",
                       "start it again (`ray start --head --port 6379`), or use --address local")
    return Finding("Ray", OK, f"{ray['version']}; no cluster running: `--address local` starts a private one",
                   "for several machines: `ray start --head --port 6379` here, `ray start --address HEAD:6379` on "
                   "each other node")


# -- the refusal before any run is created ----------------------------------------------------------------------------
def gpu_refusal(ids: list[int], gpus: dict | None = None, build: dict | None = None) -> str | None:
    """Why `device = "gpu..."` cannot train here (None when it can, or when nothing is known): the GPUs the run asks
    for (ids as CUDA numbers them; [] = all) against this MXNet build's architectures."""
    gpus = nvml_gpus() if gpus is None else gpus
    found = gpus.get("gpus") or []
    if not found:
        return None  # no NVML/nvidia-smi answer: check_device's own count check speaks
    build = mxnet_build() if build is None else build
    if not build.get("importable"):
        return None
    by_cuda_index = cuda_order(found)
    wanted = [by_cuda_index[i] for i in (ids or range(len(by_cuda_index))) if i < len(by_cuda_index)]
    for gpu in wanted:
        status, why, fix = gpu_verdict(build, gpu, build_archs(build) if build["features"].get("CUDA") else None,
                                       None)
        if status in (FAIL, WARN):
            return f"GPU {gpu['index']} ({gpu['name']}, {arch(gpu['capability'])}): {why}; fix: {fix}"
    return None


def cuda_order(gpus: list[dict]) -> list[dict]:
    """NVML lists all GPUs; CUDA numbers only those in CUDA_VISIBLE_DEVICES, in that order."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus
    by_index = {g["index"]: g for g in gpus}
    try:
        return [by_index[int(v)] for v in visible.split(",") if v.strip() and int(v) in by_index]
    except ValueError:  # GPU UUIDs: keep NVML's order
        return gpus


# -- output -----------------------------------------------------------------------------------------------------------
def render(findings: list[Finding]):
    from rich.table import Table
    from rich.text import Text

    styles = {OK: "green", WARN: "yellow", FAIL: "bold red", INFO: "dim"}
    table = Table(box=None, show_header=False, pad_edge=False, title="mxdash doctor: what this machine can run",
                  title_justify="left")
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for f in findings:
        # Text, not markup: details and fixes hold brackets (pip extras like ".[cpu,cluster]")
        table.add_row(Text(f.status, style=styles[f.status]), f.check, Text(f.detail))
        if f.fix:  # for a problem, its fix; for a working part, how to go further
            table.add_row("", Text("fix" if f.status in (WARN, FAIL) else "hint", style="bold"), Text(f.fix))
    return table


def main(json_output: bool = False, facts: dict | None = None) -> int:
    findings = diagnose(facts if facts is not None else gather())
    failed = any(f.status == FAIL for f in findings)
    if json_output:
        print(json.dumps({"ok": not failed, "checks": [asdict(f) for f in findings]}, indent=1))
    else:
        from rich.console import Console

        Console().print(render(findings))
    return 1 if failed else 0
