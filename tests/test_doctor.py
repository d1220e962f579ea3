"""`mxdash doctor` and the GPU refusal, with injected NVML / MXNet answers (no GPU on these machines)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from conftest import cli
from experiments import doctor
from experiments.doctor import FAIL, INFO, OK, WARN


class FakeNVML:
    """The pynvml calls doctor makes, answering for the given GPUs: (name, (major, minor), memory GiB)."""

    def __init__(self, gpus, driver="550.54.15", init_error=None):
        self.gpus, self.driver, self.init_error = gpus, driver, init_error
        self.shutdowns = 0

    def nvmlInit(self):
        if self.init_error:
            raise RuntimeError(self.init_error)

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self):
        return self.driver.encode()  # older pynvml returns bytes

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.gpus[i]

    def nvmlDeviceGetName(self, handle):
        return handle[0]

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return handle[1]

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=handle[2] * 2**30, used=0, free=handle[2] * 2**30)


class FakeFeatures(dict):
    def is_enabled(self, name):
        return self[name]


def fake_mxnet(cuda: bool, gpus: int = 0):
    features = FakeFeatures(CUDA=cuda, CUDNN=cuda, NCCL=cuda, MKLDNN=True, OPENMP=True, DIST_KVSTORE=True)
    return SimpleNamespace(__version__="1.9.1", runtime=SimpleNamespace(Features=lambda: features),
                           context=SimpleNamespace(num_gpus=lambda: gpus))


A100 = ("NVIDIA A100-SXM4-40GB", (8, 0), 40)
RTX4090 = ("NVIDIA GeForce RTX 4090", (8, 9), 24)
H100 = ("NVIDIA H100 80GB HBM3", (9, 0), 80)
NO_RAY = {"installed": False}
REAL_NVML_GPUS, REAL_MXNET_BUILD = doctor.nvml_gpus, doctor.mxnet_build


def facts(nvml, mx, distribution, trials):
    build = doctor.mxnet_build(mx, distribution=distribution)
    gathered = doctor.gather(nvml=nvml, mx=mx, trials=trials, ray=NO_RAY)
    gathered["mxnet"] = build  # the injected distribution name (gather reads the real one)
    return gathered


def by_check(findings):
    return {f.check: f for f in findings}


def test_ampere_with_the_cu112_build_is_ok():
    found = by_check(doctor.diagnose(facts(FakeNVML([A100, RTX4090]), fake_mxnet(True, 2), "mxnet-cu112",
                                           {0: (True, "a 4x4 op ran"), 1: (True, "a 4x4 op ran")})))
    assert found["MXNet"].status == OK and "GPU build" in found["MXNet"].detail and "cuDNN" in found["MXNet"].detail
    assert found["GPU 0"].status == OK and "sm_80" in found["GPU 0"].detail and "40 GiB" in found["GPU 0"].detail
    assert "driver 550.54.15" in found["GPU 0"].detail
    # Ada (sm_89) has no code of its own in the wheel: it runs the sm_86 kernels
    assert found["GPU 1"].status == OK and "runs sm_86 code" in found["GPU 1"].detail
    build = doctor.mxnet_build(fake_mxnet(True, 2), distribution="mxnet-cu112")
    assert doctor.gpu_refusal([0, 1], gpus=doctor.nvml_gpus(FakeNVML([A100, RTX4090])), build=build) is None


def test_h100_with_the_cu112_build_is_refused_with_the_container_advice():
    nvml = FakeNVML([H100])
    found = by_check(doctor.diagnose(facts(nvml, fake_mxnet(True, 1), "mxnet-cu112", {})))
    gpu = found["GPU 0"]
    assert gpu.status == FAIL and "sm_90" in gpu.detail and "no PTX" in gpu.detail and "sm_86" in gpu.detail
    assert "NGC MXNet container 24.05 or 24.06" in gpu.fix and "no [cpu] or [gpu]" in gpu.fix
    assert nvml.shutdowns == 1  # NVML released after reading
    build = doctor.mxnet_build(fake_mxnet(True, 1), distribution="mxnet-cu112")
    message = doctor.gpu_refusal([], gpus=doctor.nvml_gpus(FakeNVML([H100])), build=build)
    assert message.startswith("GPU 0 (NVIDIA H100 80GB HBM3, sm_90)") and "24.06" in message


def test_a_failed_kernel_trial_is_a_failure_even_when_the_arch_list_allows_it():
    found = by_check(doctor.diagnose(facts(FakeNVML([A100]), fake_mxnet(True, 1), "mxnet-cu112",
                                           {0: (False, "CUDA: libcudart.so.11.0: cannot open shared object")})))
    assert found["GPU 0"].status == FAIL and "libcudart" in found["GPU 0"].detail
    assert "CUDA 11 runtime" in found["GPU 0"].fix


def test_no_gpu():
    for nvml in (FakeNVML([]), FakeNVML([], init_error="NVML Shared Library Not Found")):
        findings = doctor.diagnose(facts(nvml, fake_mxnet(False), "mxnet", {}))
        found = by_check(findings)
        assert found["GPUs"].status == INFO and "runs use the CPU" in found["GPUs"].detail
        assert not any(f.status == FAIL for f in findings)
    assert "Shared Library Not Found" in found["GPUs"].detail
    assert doctor.gpu_refusal([0], gpus=doctor.nvml_gpus(FakeNVML([])), build={}) is None


def test_cpu_only_build_on_a_gpu_machine():
    found = by_check(doctor.diagnose(facts(FakeNVML([A100]), fake_mxnet(False), "mxnet", {})))
    assert found["MXNet"].detail.startswith("1.9.1 (mxnet, CPU build)")
    assert found["GPU 0"].status == WARN and "CPU build" in found["GPU 0"].detail
    assert ".[gpu]" in found["GPU 0"].fix
    message = doctor.gpu_refusal([0], gpus=doctor.nvml_gpus(FakeNVML([A100])),
                                 build=doctor.mxnet_build(fake_mxnet(False), distribution="mxnet"))
    assert "CPU build" in message and ".[gpu]" in message
    # a Hopper box with the CPU wheel: the GPU route there is the container, not the cu112 wheel
    found = by_check(doctor.diagnose(facts(FakeNVML([H100]), fake_mxnet(False), "mxnet", {})))
    assert "NGC" in found["GPU 0"].fix


def test_arch_rule_against_the_wheel_list():
    archs = doctor.WHEEL_ARCHS["mxnet-cu112"]
    runs = {cap: doctor.build_runs_on(archs, cap) for cap in
            [(3, 7), (5, 2), (6, 1), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (12, 0)]}
    assert runs == {(3, 7): False, (5, 2): True, (6, 1): True, (7, 5): True, (8, 0): True, (8, 6): True,
                    (8, 9): True, (9, 0): False, (10, 0): False, (12, 0): False}
    assert doctor.build_archs({"distribution": "mxnet"}) is None  # not a known GPU wheel: only a trial can tell


def test_unknown_build_trusts_the_kernel_trial(monkeypatch):
    """A build from elsewhere (e.g. NVIDIA's container): no arch list, so no refusal; the doctor's trial decides."""
    build = doctor.mxnet_build(fake_mxnet(True, 1), distribution=None)
    assert doctor.gpu_refusal([0], gpus=doctor.nvml_gpus(FakeNVML([H100])), build=build) is None
    found = by_check(doctor.diagnose(facts(FakeNVML([H100]), fake_mxnet(True, 1), None, {0: (True, "a 4x4 op ran")})))
    assert found["GPU 0"].status == OK


def test_run_on_an_h100_is_refused_before_any_run_is_created(tmp_path, monkeypatch, capsys):
    from experiments import cli

    # the real NVML / MXNet readers, fed an H100 and the cu112 wheel
    monkeypatch.setattr(doctor, "nvml_gpus", lambda nvml=None: REAL_NVML_GPUS(FakeNVML([H100])))
    monkeypatch.setattr(doctor, "mxnet_build", lambda mx=None, distribution=None:
                        REAL_MXNET_BUILD(fake_mxnet(True, 1), "mxnet-cu112"))
    path = tmp_path / "gpu.toml"
    path.write_text('[data]\nname = "digits"\n[net]\nname = "mlp"\n[optimizer]\nname = "adam"\nlr = 0.01\n'
                    '[train]\ndevice = "gpu:0"\nepochs = 1\n')
    runs_dir = tmp_path / "runs"
    assert cli.main(["run", str(path), "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert "train.device" in err and "H100" in err and "nvcr.io/nvidia/mxnet:24.06-py3" in err
    assert err.count("\n") == 1  # one line
    assert not runs_dir.exists()  # nothing created


def test_kernel_trial_catches_a_real_failure():
    """On this machine (CPU build, no GPU) the tiny GPU op really fails in its subprocess: caught, not raised."""
    ok, message = doctor.kernel_trial(0)
    assert not ok and message


def test_doctor_through_the_console_script():
    result = cli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    checks = {c["check"]: c for c in report["checks"]}
    assert report["ok"] and checks["MXNet"]["status"] == OK and "CPU build" in checks["MXNet"]["detail"]
    assert checks["GPUs"]["status"] == INFO
    assert {"Python", "numpy", "CPU", "Ray"} <= set(checks)


def test_doctor_screen_fits_80_columns():
    import subprocess
    import sys

    from conftest import PROJECT

    out = subprocess.run([sys.executable, "-m", "experiments.cli", "doctor"], capture_output=True, text=True,
                         cwd=PROJECT, env={**__import__("os").environ, "COLUMNS": "80"}, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("mxdash doctor") and all(len(line) <= 80 for line in lines)
    assert any(line.startswith("ok") and "MXNet" in line for line in lines)
    assert len(lines) <= 24  # one screen


def test_fixes_keep_their_brackets_on_screen(capsys):
    """pip extras (".[gpu]", "[cpu]") must not be eaten as Rich markup."""
    doctor.main(facts=facts(FakeNVML([H100, A100]), fake_mxnet(False), "mxnet", {}))
    out = " ".join(capsys.readouterr().out.split())
    assert 'pip install -e ".[gpu]"' in out and "no [cpu] or [gpu] extra" in out
    assert '".[cpu,cluster]"' in out
