"""Every bad input is refused the same way, through the real console script (`python -m experiments.cli`, as a user
runs `mxdash`): exit code 2, ONE line on stderr naming the key or the file, no traceback, and nothing created: the
files under the test's directory are exactly the ones that were there before (no run, no db, no folder).

A case is (id, argv, expected fragments of the message, setup). `{tmp}` in argv and fragments is the case's own
directory; by default the experiment file is `{tmp}/exp.toml` and the runs dir `{tmp}/runs`.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import struct
import subprocess
import sys

import pytest

from conftest import PROJECT, cli

EXP, RUNS = "{tmp}/exp.toml", "{tmp}/runs"
BASE = {"data": {"name": '"digits"'}, "net": {"name": '"mlp"', "hidden": "[16]"},
        "optimizer": {"name": '"adam"', "lr": "0.01"}, "train": {"epochs": "1"}}


def experiment(**changes) -> str:
    """The good experiment with `section={key: TOML value}` changes (a section BASE lacks is added)."""
    sections = {name: dict(body) for name, body in BASE.items()}
    for section, body in changes.items():
        sections.setdefault(section, {}).update(body)
    return "".join(f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in body.items())
                   for name, body in sections.items())


GOOD = experiment()


def write_idx(path, values, magic, count=None):
    """An MNIST idx .gz file; `count` overrides the sample count its header declares."""
    import numpy as np

    sizes = (len(values) if count is None else count,) + values.shape[1:]
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(f">{1 + len(sizes)}i", magic, *sizes) + values.astype(np.uint8).tobytes())


def fake_mnist(root, n=40, labels=None, images_magic=2051, images_count=None):
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
    write_idx(root / "train-images-idx3-ubyte.gz", images, images_magic, images_count)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.arange(labels or n, dtype=np.uint8) % 10, 2049)
    write_idx(root / "t10k-images-idx3-ubyte.gz", images[:10], 2051)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8), 2049)


# -- setups: each makes what a case needs in its directory, before the "nothing created" snapshot --------------------
def write(name, content):
    def setup(tmp):
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def corrupt_db(tmp):
    (tmp / "runs").mkdir()
    (tmp / "runs" / "mxdash.db").write_bytes(random.Random(9).randbytes(4096))


def store_with_a_run(tmp):
    from conftest import create_runs

    store, run_ids = create_runs(tmp / "runs", {"net": {"hidden": [4]}, "train": {"epochs": 1}}, name="t")
    store.close()
    (tmp / "run_id").write_text(run_ids[0])


def mnist(**kwargs):
    return lambda tmp: fake_mnist(tmp / "m", **kwargs)


def mnist_file(name, content):
    def setup(tmp):
        fake_mnist(tmp / "m")
        (tmp / "m" / name).write_bytes(content)
    return setup


def both(*setups):
    def setup(tmp):
        for one in setups:
            one(tmp)
    return setup


def bad(case_id, expect, argv=None, setup=None, **changes):
    """A case on the good experiment with `changes`; `expect` fragments are checked after the key and file."""
    text = experiment(**changes)
    return case_id, argv or ["run", EXP, "--runs-dir", RUNS], expect, both(write("exp.toml", text), setup or
                                                                          (lambda tmp: None))


def raw(case_id, text, expect, argv=None):
    return case_id, argv or ["run", EXP, "--runs-dir", RUNS], expect, write("exp.toml", text)


def command(case_id, argv, expect, setup=None):
    return case_id, argv, expect, setup or (lambda tmp: None)


MNIST_ROOT = {"data": {"name": '"mnist"', "root": '"{tmp}/m"'}}
RUN_ID = "{run_id}"  # read from {tmp}/run_id (store_with_a_run)
OPTIMIZERS = str(PROJECT / "experiments" / "optimizers.toml")
HUGE_GRID = "[grid]\n" + "".join(f'"{key}" = [{", ".join(str(v) for v in range(1, 101))}]\n'
                                  for key in ("train.seed", "train.epochs", "train.log_every"))

CASES = [
    # ---- broken before this change: accepted, then failed or "completed" inside the worker (runs were created)
    bad("lr nan", ["optimizer.lr", "finite", "nan"], optimizer={"lr": "nan"}),
    bad("lr inf", ["optimizer.lr", "finite", "inf"], optimizer={"lr": "inf"}),
    bad("lr -inf", ["optimizer.lr", "finite"], optimizer={"lr": "-inf"}),
    bad("lr 1e400 (inf)", ["optimizer.lr", "finite"], optimizer={"lr": "1e400"}),
    bad("wd nan", ["optimizer.wd", "finite"], optimizer={"wd": "nan"}),
    bad("wd inf", ["optimizer.wd", "finite"], optimizer={"wd": "inf"}),
    bad("--set lr nan", ["optimizer.lr", "finite"], argv=["run", EXP, "--runs-dir", RUNS, "--set", "optimizer.lr=nan"]),
    bad("epsilon -1", ["optimizer.epsilon", "positive"], optimizer={"epsilon": "-1"}),
    bad("epsilon 0", ["optimizer.epsilon", "positive"], optimizer={"epsilon": "0"}),
    bad("beta1 2", ["optimizer.beta1", "[0, 1)"], optimizer={"beta1": "2"}),
    bad("beta1 1", ["optimizer.beta1", "[0, 1)"], optimizer={"beta1": "1.0"}),
    bad("beta2 -0.1", ["optimizer.beta2", "[0, 1)"], optimizer={"beta2": "-0.1"}),
    bad("momentum 1.5", ["optimizer.momentum", "[0, 1)"], optimizer={"name": '"momentum"', "momentum": "1.5"}),
    bad("rho 1", ["optimizer.rho", "[0, 1)"], optimizer={"name": '"rmsprop"', "rho": "1.0"}),
    bad("final_lr -1", ["schedule.final_lr", ">= 0"], schedule={"name": '"cosine"', "final_lr": "-1"}),
    bad("final_lr nan", ["schedule.final_lr", "finite"], schedule={"name": '"cosine"', "final_lr": "nan"}),
    bad("clip_gradient nan", ["optimizer.clip_gradient", "finite"], optimizer={"clip_gradient": "nan"}),
    bad("clip_gradient 0", ["optimizer.clip_gradient", "positive"], optimizer={"clip_gradient": "0"}),
    bad("diverge_factor nan", ["train.diverge_factor", "finite"], train={"diverge_factor": "nan"}),
    bad("diverge_factor inf", ["train.diverge_factor", "finite"], train={"diverge_factor": "inf"}),
    bad("dropout 2", ["net.dropout", "[0, 1)"], net={"dropout": "2.0"}),
    bad("dropout nan", ["net.dropout", "finite"], net={"dropout": "nan"}),
    bad("hidden [-4]", ["net.hidden", "[-4]"], net={"hidden": "[-4]"}),
    bad("hidden [a]", ["net.hidden", "['a']"], net={"hidden": '["a"]'}),
    bad("hidden [1.5]", ["net.hidden", "1.5"], net={"hidden": "[1.5]"}),
    bad("hidden too wide", ["net.hidden", "3000000000"], net={"hidden": "[3000000000]"}),
    bad("leaky_slope nan", ["net.leaky_slope", "finite"], net={"activation": '"leaky_relu"', "leaky_slope": "nan"}),
    bad("train seed -1", ["train.seed", "-1"], train={"seed": "-1"}),
    bad("train seed 2**32", ["train.seed", "4294967296"], train={"seed": "4294967296"}),
    bad("data seed -1", ["data.seed", "-1"], data={"seed": "-1"}),
    bad("activation swish", ["net.activation", "swish"], net={"activation": '"swish"'}),
    bad("lstm on vector data", ["net.name", "lstm", "vector"], net={"name": '"lstm"', "hidden": "16"}),
    bad("cnn on vector data", ["net.name", "cnn", "vector", "as_images = true"], net={"name": '"cnn"'}),
    bad("mlp on token data", ["net.name", "tokens"], data={"name": '"tokens"'}),
    bad("cnn kernel larger than image", ["net.kernels", "conv stage 0"],
        data={"as_images": "true"}, net={"name": '"cnn"', "hidden": "[8]", "channels": "[4]", "kernels": "[9]",
                                          "padding": "[0]"}),
    bad("cnn zero channels", ["net.channels"], data={"as_images": "true"}, net={"name": '"cnn"', "channels": "[0]"}),
    bad("lstm zero layers", ["net.layers"], data={"name": '"seq_digits"'}, net={"name": '"lstm"', "hidden": "8",
                                                                                "layers": "0"}),
    bad("batch larger than training set", ["train.batch_size", "1438 training samples"],
        train={"batch_size": "1500"}),
    bad("batch far larger than data", ["train.batch_size"], data={"name": '"xor"', "n_samples": "50"},
        train={"batch_size": "64"}),
    bad("device cpu:0,0", ["train.device", "more than once"], train={"device": '"cpu:0,0"'}),
    bad("device gpu:1,1", ["train.device", "more than once"], train={"device": '"gpu:1,1"'}),
    bad("threads 100000", ["train.threads", f"1 to {os.cpu_count()}"], train={"threads": "100000"}),
    bad("epochs 2**63-1", ["train.epochs", "9223372036854775807"], train={"epochs": "9223372036854775807"}),
    bad("epochs beyond int32", ["train.epochs", "3000000000"], train={"epochs": "3000000000"}),
    bad("step_epochs decreasing", ["schedule.step_epochs", "increasing"],
        schedule={"name": '"step"', "step_epochs": "[3, 1]"}),
    bad("val_fraction leaves no validation", ["data.val_fraction", "0 for validation"],
        data={"val_fraction": "0.0001"}),
    bad("spiral one class", ["data.classes"], data={"name": '"spiral"', "classes": "1"}),
    bad("spiral too few samples", ["data.n_samples"], data={"name": '"spiral"', "n_samples": "3"}),
    bad("spiral noise -1", ["data.noise"], data={"name": '"spiral"', "noise": "-1.0"}),
    bad("tokens min_len > max_len", ["data.min_len"], data={"name": '"tokens"', "min_len": "10", "max_len": "5"},
        net={"name": '"lstm"', "hidden": "8"}),
    bad("mnist missing files", ["data.root", "MNIST files missing in {tmp}/m", "train-images-idx3-ubyte.gz"],
        **MNIST_ROOT),
    bad("fashion_mnist missing files", ["data.root", "Fashion-MNIST files missing in {tmp}/m"],
        data={"name": '"fashion_mnist"', "root": '"{tmp}/m"'}),
    bad("imdb missing files", ["data.root", "IMDB reviews not found in {tmp}/aclImdb", "train/pos"],
        data={"name": '"imdb"', "root": '"{tmp}/aclImdb"'}, net={"name": '"lstm"', "hidden": "8"}),
    bad("imdb missing neg folder", ["data.root", "train/neg"], setup=write("aclImdb/train/pos/1_9.txt", "great"),
        data={"name": '"imdb"', "root": '"{tmp}/aclImdb"'}, net={"name": '"lstm"', "hidden": "8"}),
    bad("mnist empty files", ["data.root", "{tmp}/m/train-images-idx3-ubyte.gz", "empty file"],
        setup=both(*(write(f"m/{name}", b"") for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))),
        **MNIST_ROOT),
    bad("mnist bad magic", ["data.root", "train-images-idx3-ubyte.gz", "magic number 2049"],
        setup=mnist(images_magic=2049), **MNIST_ROOT),
    bad("mnist not gzip", ["data.root", "train-labels-idx1-ubyte.gz", "cannot read"],
        setup=mnist_file("train-labels-idx1-ubyte.gz", b"not gzip at all"), **MNIST_ROOT),
    bad("mnist truncated images", ["data.root", "train-images-idx3-ubyte.gz", "truncated"],
        setup=mnist(images_count=80), **MNIST_ROOT),
    bad("mnist labels count differs", ["data.root", "40 training images but 39 labels"],
        setup=mnist(labels=39), **MNIST_ROOT),
    bad("mnist limit -1", ["data.limit"], setup=mnist(), data={"name": '"mnist"', "root": '"{tmp}/m"', "limit": "-1"}),
    # ---- broken before: tracebacks instead of one line
    raw("binary experiment file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", [EXP, "binary file"]),
    raw("latin-1 experiment file", '[experiment]\nname = "caf\xe9"\n'.encode("latin-1"), [EXP, "not UTF-8"]),
    command("experiment path under a file", ["run", "{tmp}/exp.toml/x.toml", "--runs-dir", RUNS],
            ["{tmp}/exp.toml/x.toml", "cannot read"], write("exp.toml", GOOD)),
    command("runs dir is a file (run)", ["run", EXP, "--runs-dir", "{tmp}/afile"], ["--runs-dir {tmp}/afile", "file"],
            both(write("exp.toml", GOOD), write("afile", "x"))),
    command("runs dir is a file (dry-run)", ["run", EXP, "--dry-run", "--runs-dir", "{tmp}/afile"],
            ["--runs-dir {tmp}/afile"], both(write("exp.toml", GOOD), write("afile", "x"))),
    command("runs dir is a file (ls)", ["ls", "--runs-dir", "{tmp}/afile"], ["--runs-dir {tmp}/afile"],
            write("afile", "x")),
    command("runs dir is a file (show)", ["show", "x", "--runs-dir", "{tmp}/afile"], ["--runs-dir {tmp}/afile"],
            write("afile", "x")),
    command("runs dir under a file", ["run", EXP, "--runs-dir", "{tmp}/afile/runs"], ["{tmp}/afile is a file"],
            both(write("exp.toml", GOOD), write("afile", "x"))),
    command("runs dir under /proc", ["run", EXP, "--runs-dir", "/proc/mxdash-no-such/runs"],
            ["--runs-dir /proc/mxdash-no-such/runs", "cannot create"], write("exp.toml", GOOD)),
    *[command(f"4 KB random mxdash.db ({' '.join(a for a in argv if '{' not in a)})", [*argv, "--runs-dir", RUNS],
              ["{tmp}/runs/mxdash.db", "not a readable mxdash store", "move it aside"],
              both(corrupt_db, write("exp.toml", GOOD)))
      for argv in (["run", EXP], ["ls"], ["show", "x"], ["compare", "x", "y"], ["export", "x", "--out", "{tmp}/e"],
                   ["stop", "x"], ["resume", "x"], ["gc"], ["gc", "--yes"])],
    command("export --out onto a file", ["export", RUN_ID, "--runs-dir", RUNS, "--out", "{tmp}/afile"],
            ["--out {tmp}/afile", "is a file"], both(store_with_a_run, write("afile", "x"))),
    command("export --out under a file", ["export", RUN_ID, "--runs-dir", RUNS, "--out", "{tmp}/afile/out"],
            ["--out {tmp}/afile/out", "{tmp}/afile is a file"], both(store_with_a_run, write("afile", "x"))),
    command("export --out under /proc", ["export", RUN_ID, "--runs-dir", RUNS, "--out", "/proc/mxdash-no-such/out"],
            ["--out /proc/mxdash-no-such/out", "cannot write"], store_with_a_run),
    # ---- broken before: silently ignored (a --set on a key inside a section axis)
    command("--set lr on a section axis", ["run", OPTIMIZERS, "--runs-dir", RUNS, "--set", "train.epochs=1",
                                          "--set", "optimizer.lr=-0.5"], ["optimizer.lr", "-0.5"]),
    command("--set name on a section axis", ["run", OPTIMIZERS, "--runs-dir", RUNS, "--set", "train.epochs=1",
                                            "--set", "optimizer.name=adam"],
            ["--set optimizer.name", "grid axis \"optimizer\"", "grid.optimizer=["]),
    # ---- broken before: other silently dropped or oversized input
    raw("grid value the runs do not use", GOOD + '[grid]\n"optimizer.momentum" = [0.5, 0.9]\n',
        [EXP, "grid: runs 1 and 2 are identical", "optimizer.momentum"]),
    raw("grid of a million runs", GOOD + HUGE_GRID, ["grid: 1,000,000 runs", "10,000"]),
    command("--parallel 0", ["run", EXP, "--parallel", "0", "--runs-dir", RUNS], ["--parallel"],
            write("exp.toml", GOOD)),
    command("--per-gpu 0", ["run", EXP, "--per-gpu", "0", "--runs-dir", RUNS], ["--per-gpu"], write("exp.toml", GOOD)),
    command("--parallel not a number", ["run", EXP, "--parallel", "x", "--runs-dir", RUNS], ["--parallel", "'x'"],
            write("exp.toml", GOOD)),
    command("--nice 25", ["run", EXP, "--nice", "25", "--runs-dir", RUNS], ["--nice", "0..19", "'25'"],
            write("exp.toml", GOOD)),
    command("resume --nice -1", ["resume", "x", "--nice", "-1", "--runs-dir", RUNS], ["--nice", "0..19"]),
    command("stop --timeout -1", ["stop", "x", "--timeout", "-1", "--runs-dir", RUNS], ["--timeout"]),
    command("export --format xml", ["export", "x", "--format", "xml", "--runs-dir", RUNS], ["--format", "xml"]),
    command("unknown command", ["frobnicate"], ["frobnicate"]),
    command("run without a file", ["run", "--runs-dir", RUNS], ["file"]),
    # ---- held before this change (kept so they keep holding)
    raw("unknown section", GOOD + "[model]\nx = 1\n", [EXP, "model: unknown section"]),
    raw("section not a table", "data = 3\n" + GOOD.replace("[data]\nname = \"digits\"\n", ""),
        [EXP, "data: expected a [section] table"]),
    raw("array of tables", GOOD + '[[optimizer]]\nname = "sgd"\n', [EXP, "invalid TOML"]),
    bad("unknown key", ["train.epoch", "unknown key"], train={"epoch": "2"}),
    bad("unknown net", ["net.name", "unknown net 'resnet'"], net={"name": '"resnet"'}),
    bad("unknown net key", ["net.hiden", "unknown key"], net={"hiden": "[16]"}),
    bad("unknown dataset", ["data.name", "unknown dataset 'cifar'"], data={"name": '"cifar"'}),
    bad("unknown dataset key", ["data.n_samples", "unknown key"], data={"n_samples": "10"}),
    bad("unknown optimizer", ["optimizer.name", "unknown optimizer 'adamw'"], optimizer={"name": '"adamw"'}),
    bad("unknown optimizer key", ["optimizer.lr_decay", "unknown key"], optimizer={"lr_decay": "0.1"}),
    bad("epochs a string", ["train.epochs", "expected an integer, got 'ten'"], train={"epochs": '"ten"'}),
    bad("epochs a float", ["train.epochs", "expected an integer"], train={"epochs": "1.5"}),
    bad("lr a string", ["optimizer.lr", "expected a number"], optimizer={"lr": '"fast"'}),
    bad("lr a bool", ["optimizer.lr", "expected a number"], optimizer={"lr": "true"}),
    bad("lr a date", ["optimizer.lr", "expected a number"], optimizer={"lr": "1979-05-27"}),
    bad("centered a string", ["optimizer.centered", "true or false"], optimizer={"centered": '"yes"'}),
    bad("hidden not a list", ["net.hidden", "expected a list"], net={"hidden": "16"}),
    bad("experiment name a number", ["experiment.name", "expected a string"], experiment={"name": "3"}),
    bad("lr negative", ["optimizer.lr", "expected a positive number, got -0.1"], optimizer={"lr": "-0.1"}),
    bad("lr zero", ["optimizer.lr", "expected a positive number"], optimizer={"lr": "0"}),
    bad("wd negative", ["optimizer.wd", ">= 0"], optimizer={"wd": "-1"}),
    bad("clip_gradient negative", ["optimizer.clip_gradient", "positive"], optimizer={"clip_gradient": "-1"}),
    bad("batch size 0", ["train.batch_size", "positive integer"], train={"batch_size": "0"}),
    bad("epochs negative", ["train.epochs", "positive integer"], train={"epochs": "-3"}),
    bad("log_every 0", ["train.log_every"], train={"log_every": "0"}),
    bad("probe_every 0", ["train.probe_every"], train={"probe_every": "0"}),
    bad("probe_batch 0", ["train.probe_batch"], train={"probe_batch": "0"}),
    bad("checkpoint_every 0", ["train.checkpoint_every"], train={"checkpoint_every": "0"}),
    bad("threads negative", ["train.threads"], train={"threads": "-1"}),
    bad("diverge_factor 0.5", ["train.diverge_factor", "> 1"], train={"diverge_factor": "0.5"}),
    bad("unknown device", ["train.device", "'tpu:0'"], train={"device": '"tpu:0"'}),
    bad("gpu not there", ["train.device", "asks for a GPU"], train={"device": '"gpu:0"'}),
    bad("val_fraction 1.5", ["data.val_fraction", "(0, 1)"], data={"val_fraction": "1.5"}),
    bad("val_fraction 0", ["data.val_fraction", "(0, 1)"], data={"val_fraction": "0.0"}),
    bad("unknown schedule", ["schedule.name", "unknown schedule 'exp'"], schedule={"name": '"exp"'}),
    bad("step schedule without steps", ["schedule.step_epochs", "non-empty"], schedule={"name": '"step"'}),
    bad("step factor 2", ["schedule.factor", "(0, 1]"], schedule={"name": '"step"', "step_epochs": "[1]",
                                                                  "factor": "2.0"}),
    bad("warmup negative", ["schedule.warmup_steps"], schedule={"warmup_steps": "-1"}),
    raw("empty grid axis", GOOD + '[grid]\n"optimizer.lr" = []\n', [EXP, "grid.optimizer.lr: empty grid axis"]),
    raw("grid not a list", GOOD + '[grid]\n"optimizer.lr" = 0.1\n', [EXP, "grid.optimizer.lr: expected a list"]),
    raw("grid bad key", GOOD + '[grid]\n"lr" = [0.1]\n', [EXP, "grid.lr: grid keys are dotted paths"]),
    raw("grid bad value", GOOD + '[grid]\n"optimizer.lr" = [0.1, -1.0]\n', [EXP, "optimizer.lr: expected a positive"]),
    raw("section axis of non-tables", GOOD + '[grid]\n"optimizer" = ["sgd"]\n', [EXP, "grid.optimizer: a section"]),
    raw("section axis unknown key", GOOD + '[grid]\n"optimizer" = [{name = "sgd", lrr = 0.1}]\n',
        [EXP, "optimizer.lrr: unknown key"]),
    raw("bad toml", GOOD + "[grid\n", [EXP, "invalid TOML"]),
    command("missing file", ["run", "{tmp}/nope.toml", "--runs-dir", RUNS], ["{tmp}/nope.toml", "no such"]),
    command("file is a directory", ["run", "{tmp}", "--runs-dir", RUNS], ["{tmp}", "is a directory"]),
    bad("--set without =", ["--set expects key=value"], argv=["run", EXP, "--runs-dir", RUNS, "--set", "lr"]),
    bad("--set without section", ["--set keys are section.key"],
        argv=["run", EXP, "--runs-dir", RUNS, "--set", "nosection=3"]),
    bad("--set unknown section", ["unknown section 'model'"],
        argv=["run", EXP, "--runs-dir", RUNS, "--set", "model.x=1"]),
    bad("--set lr negative", ["optimizer.lr", "expected a positive number"],
        argv=["run", EXP, "--runs-dir", RUNS, "--set", "optimizer.lr=-1"]),
    bad("--set epochs a float", ["train.epochs", "expected an integer"],
        argv=["run", EXP, "--runs-dir", RUNS, "--set", "train.epochs=1e3"]),
    bad("--set empty grid axis", ["grid.optimizer.lr: empty grid axis"],
        argv=["run", EXP, "--runs-dir", RUNS, "--set", "grid.optimizer.lr=[]"]),
    command("ls without a runs dir", ["ls", "--runs-dir", RUNS], ["no runs directory at {tmp}/runs"]),
    command("ls unknown status", ["ls", "--status", "bogus", "--runs-dir", RUNS], ["unknown status 'bogus'"],
            store_with_a_run),
    command("ls unknown experiment", ["ls", "--experiment", "nope", "--runs-dir", RUNS], ["nope"], store_with_a_run),
    command("show unknown run", ["show", "nope", "--runs-dir", RUNS], ["nope"], store_with_a_run),
    command("export unknown run", ["export", "nope", "--runs-dir", RUNS, "--out", "{tmp}/e"], ["nope"],
            store_with_a_run),
    command("stop unknown run", ["stop", "nope", "--runs-dir", RUNS], ["nope"], store_with_a_run),
    command("resume unknown run", ["resume", "nope", "--runs-dir", RUNS], ["nope"], store_with_a_run),
]


def files_under(root) -> set:
    """Every path under `root`, except the WAL and shared-memory files SQLite keeps beside an existing database."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(("-wal", "-shm"))}


def assert_refused(result, tmp, before: set, expect: list) -> str:
    """The contract: exit 2, one line on stderr naming what `expect` says, no traceback, nothing created."""
    stderr = result.stderr
    assert result.returncode == 2, f"exit {result.returncode}; stderr: {stderr[-1500:]}"
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, f"expected one line, got:\n{stderr}"
    for fragment in expect:
        assert fragment in stderr, f"{fragment!r} not in {stderr!r}"
    assert files_under(tmp) == before, f"created: {sorted(files_under(tmp) - before)}"
    return stderr


@pytest.mark.parametrize("case_id, argv, expect, setup", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_with_one_line_and_nothing_created(tmp_path, case_id, argv, expect, setup):
    setup(tmp_path)
    run_id = (tmp_path / "run_id").read_text() if (tmp_path / "run_id").exists() else ""

    def fill(text):
        return text.replace("{tmp}", str(tmp_path)).replace("{run_id}", run_id)
    if (tmp_path / "exp.toml").is_file() and "{tmp}" in (tmp_path / "exp.toml").read_bytes().decode("latin-1"):
        (tmp_path / "exp.toml").write_text(fill((tmp_path / "exp.toml").read_text()))
    before = files_under(tmp_path)
    result = cli(*[fill(arg) for arg in argv], timeout=120)
    assert_refused(result, tmp_path, before, [fill(fragment) for fragment in expect])


def test_case_ids_are_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))


# -- a broken module in nets/: named with its line; the other nets keep working, in `run` and in the worker ----------
@pytest.fixture
def broken_net_module():
    path = PROJECT / "nets" / f"zz_broken_{os.getpid()}.py"
    path.write_text('"""A net module with a syntax error on line 4."""\nimport math\n\ndef build(:\n    pass\n')
    yield path
    path.unlink(missing_ok=True)


def test_broken_net_module_is_named_with_its_line(tmp_path, broken_net_module):
    (tmp_path / "exp.toml").write_text(experiment(net={"name": f'"{broken_net_module.stem}"'}))
    before = files_under(tmp_path)
    result = cli("run", tmp_path / "exp.toml", "--runs-dir", tmp_path / "runs", timeout=120)
    assert_refused(result, tmp_path, before, ["net.name", f"{broken_net_module} line 4: SyntaxError"])
    (tmp_path / "exp.toml").write_text(experiment(net={"name": '"resnet"'}))
    result = cli("run", tmp_path / "exp.toml", "--runs-dir", tmp_path / "runs", timeout=120)
    assert_refused(result, tmp_path, before, ["unknown net 'resnet'", f"{broken_net_module} line 4"])


def test_other_nets_keep_working_with_a_broken_module_in_run_and_resume(tmp_path, broken_net_module):
    from conftest import create_runs

    (tmp_path / "exp.toml").write_text(GOOD)
    result = cli("run", tmp_path / "exp.toml", "--dry-run", "--runs-dir", tmp_path / "runs", timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # the worker that `resume` starts imports the nets too
    store, (run_id,) = create_runs(tmp_path / "runs", {"net": {"hidden": [8]}, "train": {"epochs": 1}})
    store.finish_run(run_id, "stopped")
    store.close()
    result = cli("resume", run_id, "--wait", "--runs-dir", tmp_path / "runs", timeout=300)
    listing = json.loads(cli("ls", "--json", "--runs-dir", tmp_path / "runs").stdout)
    assert result.returncode == 0 and listing[0]["status"] == "completed", (result.stderr, listing[0]["error"])


# -- output into a pipe that closes early ----------------------------------------------------------------------------
def test_dry_run_json_into_head_is_quiet(tmp_path):
    """`mxdash run FILE --dry-run --json | head`: the JSON (1,000 runs, ~1 MB) is more than a pipe holds, so the
    writer sees the reader go away; that is not an error: exit 0 and nothing on stderr."""
    (tmp_path / "exp.toml").write_text(
        GOOD + '[grid]\n"train.seed" = [' + ", ".join(map(str, range(1000))) + "]\n")
    script = (f"{sys.executable} -m experiments.cli run {tmp_path / 'exp.toml'} --dry-run --json "
              f"--runs-dir {tmp_path / 'runs'} | head -c 100 > /dev/null; echo ${{PIPESTATUS[0]}}")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert result.stderr == "" and result.stdout.strip() == "0", (result.stdout, result.stderr)


def test_a_refusal_needs_no_mxnet(tmp_path):
    """A wrong key is refused without importing mxnet (refusals answer in a fraction of a second), while the
    nets' and the dataset's own checks still run: checked through the process's own record of its imports."""
    (tmp_path / "exp.toml").write_text(experiment(net={"dropout": "2.0"}))
    code = ("import sys\nsys.argv = ['mxdash'] + sys.argv[1:]\ntry:\n"
            "    from experiments.cli import main; code = main()\nfinally:\n"
            "    print('mxnet' in sys.modules, file=sys.stderr)\nsys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, "run", str(tmp_path / "exp.toml"), "--runs-dir",
                             str(tmp_path / "runs")], capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert result.returncode == 2 and "net.dropout" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "False"
