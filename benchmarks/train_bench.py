"""Throughput of mxdash's training loop (`Run.train`) against a bare hand-written hybridized Gluon loop.

Same net (built by nets.build_net, Xavier init, same seed), same data (the dataset's own `train_batches`: one gather
per epoch, then NDArray slices), same batch size and optimizer (the run's Trainer arguments) on both sides.

What one timed segment covers (steady state; warm-up = the first epoch of every loop, hybridize included, untimed):
- bare: `autograd.record(); loss_fn(net(x), y); backward(); trainer.step(bs)` per batch, plus
  `loss.mean().asscalar()` every `log_every` steps (what a reasonable hand-written loop does to print its loss),
  and `mx.nd.waitall()` at the end of every epoch, inside the timed region. After every epoch it validates like the
  run does (same val batches, last one smaller), untimed: a shape change of the hybridized net lands in both loops.
- bare, no reads: the same, never reading anything before the waitall (an upper bound nobody runs).
- mxdash: `Run.train` with a real store in a temp dir (MetricWriter flushing about once a second, the stop-request
  check after every flush, the worker's heartbeat thread) and everything the loop does per step and per log
  window (loss/grad-norm/lr reads, per-epoch RNG reseed when the net uses dropout, dead-ReLU probe every
  `probe_every` steps).
  Excluded: `end_epoch` (validation + checkpoint), timed with a `waitall()` on both sides of it and subtracted,
  and the tail after the last epoch (final probe, checkpoint, flush), which happens once per run.
- mxdash, no probe: the same with `train.probe_every` = 10**9; probe cost = its throughput / mxdash's - 1.

Segments run interleaved (bare, bare-no-reads, mxdash, mxdash-no-probe, rotated every repetition); the table shows
the median samples/s of each and the median of the per-repetition ratios (both sides measured back to back).
The machine may be shared: a repetition during which other processes used more than --max-other cores
(/proc/stat minus this process) is redone, within a time budget; the table says how many were clean.
Each net runs in its own process (a net trained earlier in the same process slowed later ones by up to 2x).
OMP_NUM_THREADS is set to the core count before mxnet is imported, as the worker does.

    /work/venv/bin/python benchmarks/train_bench.py [--quick] [--reps 5] [--cases mlp,cnn,cnn28,lstm]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)  # before mxnet is imported (FACTS.md)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", category=UserWarning)  # SymbolBlock's "data: None" type-inference chatter
warnings.filterwarnings("ignore", category=DeprecationWarning)

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

import nets  # noqa: E402
from experiments.config import BASE_DEFAULTS, plan_runs, resolve_run  # noqa: E402
from experiments.data import MNIST_FILES, load_dataset  # noqa: E402
from experiments.store import Store  # noqa: E402
from experiments.train import MetricWriter, Run, optimizer_args  # noqa: E402
from experiments.train import Heartbeat  # noqa: E402

NO_PROBE = 10 ** 9
MNIST_LIKE_SAMPLES = 2400  # random 28x28 images: 1920 train = 30 steps of 64 per epoch

# name -> (description, raw config sections, epochs per timed segment). Segments are short (~0.3-0.6 s) and many:
# on a shared, noisy machine, medians of many back-to-back pairs beat a few long runs.
CASES = {
    "mlp": ("MLP 64-128-64-10, digits vectors", {"data": {"name": "digits"}, "net": {"name": "mlp"}}, 8),
    "cnn": ("CNN 16-32 ch, digits 1x8x8", {"data": {"name": "digits", "as_images": True}, "net": {"name": "cnn"}},
            4),
    "cnn28": ("CNN 16-32 ch, random 1x28x28 (MNIST-sized)", {"data": {"name": "mnist"}, "net": {"name": "cnn"}}, 1),
    "lstm": ("LSTM 64, seq_digits 8x8", {"data": {"name": "seq_digits"}, "net": {"name": "lstm"}}, 4),
}


def write_fake_mnist(root: Path, n: int, seed: int = 0) -> None:
    """MNIST idx .gz files of random pixels and labels (the real loader reads them; nothing is downloaded)."""
    rng = np.random.RandomState(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, count in ((MNIST_FILES[0], n), (MNIST_FILES[1], n), (MNIST_FILES[2], 10), (MNIST_FILES[3], 10)):
        if "images" in name:
            header = np.array([2051, count, 28, 28], dtype=">i4").tobytes()
            body = rng.randint(0, 256, (count, 28, 28)).astype(np.uint8).tobytes()
        else:
            header = np.array([2049, count], dtype=">i4").tobytes()
            body = rng.randint(0, 10, count).astype(np.uint8).tobytes()
        with gzip.open(root / name, "wb", compresslevel=1) as f:
            f.write(header + body)


def resolved_config(sections: dict, probe_every: int) -> dict:
    raw = {section: dict(body) for section, body in sections.items()}
    raw.setdefault("train", {})["probe_every"] = probe_every
    raw["train"]["epochs"] = 10 ** 6  # the benchmark sets run.epochs itself, segment by segment
    raw["train"]["checkpoint_every"] = 1
    return resolve_run(plan_runs(raw)[0], None, "bench")


# -- bare loop --------------------------------------------------------------------------------------------------------
class BareLoop:
    """What a reasonable person writes by hand, on the same net, data and optimizer as the run."""

    def __init__(self, config: dict, ctx, read_every: int | None):
        train = config["train"]
        self.batch_size, self.seed, self.read_every, self.ctx = train["batch_size"], train["seed"], read_every, ctx
        mx.random.seed(self.seed)
        np.random.seed(self.seed)
        self.data = load_dataset(config["data"])
        self.net = nets.build_net(config["net"]["name"], {k: v for k, v in config["net"].items() if k != "name"},
                                  self.data.info)
        self.net.initialize(mx.init.Xavier(), ctx=ctx)
        self.net.hybridize(static_alloc=True, static_shape=True)
        self.with_length = nets.takes_valid_length(self.net)
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        name, args = optimizer_args(config["optimizer"], None)
        self.trainer = gluon.Trainer(self.net.collect_params(), name, args)
        self.epoch, self.step, self.last_loss = 0, 0, None
        self.steps_per_epoch = self.data.steps_per_epoch(self.batch_size)

    def run_epochs(self, epochs: int) -> tuple[float, int]:
        """Train `epochs` epochs, validating after each one like the run does (untimed); returns (training seconds,
        samples), each epoch's final waitall included."""
        seconds, samples = 0.0, 0
        for _ in range(epochs):
            mx.nd.waitall()
            start = time.perf_counter()
            for x, y, valid_length in self.data.train_batches(self.epoch, self.batch_size, self.ctx,
                                                              shuffle_seed=self.seed):
                with autograd.record():
                    out = self.net(x, valid_length) if self.with_length else self.net(x)
                    loss = self.loss_fn(out, y)
                loss.backward()
                self.trainer.step(self.batch_size)
                self.step += 1
                samples += self.batch_size
                if self.read_every and self.step % self.read_every == 0:
                    self.last_loss = loss.mean().asscalar()
            mx.nd.waitall()
            seconds += time.perf_counter() - start
            self.epoch += 1
            self.validate()
        return seconds, samples

    def validate(self) -> tuple[float, float]:
        """The same forward passes as Run.validate (the last batch is smaller, as in the run)."""
        accuracy, loss_metric = mx.metric.Accuracy(), mx.metric.Loss()
        for x, y, valid_length in self.data.val_batches(self.batch_size, self.ctx):
            out = self.net(x, valid_length) if self.with_length else self.net(x)
            accuracy.update(y, out)
            loss_metric.update(None, self.loss_fn(out, y))
        mx.nd.waitall()
        return loss_metric.get()[1], accuracy.get()[1]


# -- mxdash loop ------------------------------------------------------------------------------------------------------
class MxdashLoop:
    """A real run in a real store; `run.train` is called again for every segment with more epochs to go."""

    def __init__(self, store: Store, run_id: str, log_file):
        self.store, self.run_id = store, run_id
        self.log = lambda line: print(line, file=log_file, flush=True)  # the worker's stdout goes to a log file
        self.run = Run(store, run_id, log=self.log)
        self.writer = MetricWriter(store, run_id)
        self.run.epochs = 0
        self.spans: list[tuple[float, float]] = []
        self.entries: list[float] = []
        original_end_epoch = self.run.end_epoch

        def timed_end_epoch(writer):
            mx.nd.waitall()  # everything queued by training so far is training time
            entered = time.perf_counter()
            self.entries.append(entered)
            original_end_epoch(writer)
            mx.nd.waitall()
            self.spans.append((entered, time.perf_counter()))
            return time.perf_counter() - entered  # Run.train excludes it from samples/s

        self.run.end_epoch = timed_end_epoch

    def run_epochs(self, epochs: int) -> tuple[float, int]:
        """Train `epochs` more epochs; returns (training seconds, samples): from the call to the last epoch's end,
        minus the earlier epochs' end_epoch (validation + checkpoint)."""
        self.spans, self.entries = [], []
        self.run.epochs += epochs
        beat = Heartbeat(self.store.runs_dir, self.run_id, None).start()  # what the worker runs beside the loop
        try:
            mx.nd.waitall()
            start = time.perf_counter()
            status = self.run.train(self.writer)
        finally:
            beat.stop()
        assert status == "completed", status
        assert len(self.entries) == epochs, (len(self.entries), epochs)
        excluded = sum(end - begin for begin, end in self.spans[:-1])
        seconds = self.entries[-1] - start - excluded
        return seconds, epochs * self.run.data.steps_per_epoch(self.run.batch_size) * self.run.batch_size


# -- benchmark --------------------------------------------------------------------------------------------------------
class OtherLoad:
    """CPU time other processes took during a segment (Linux /proc/stat minus this process), in cores.

    The machine is shared: a segment during which others kept a core busy measures the scheduler, not the loop.
    Repetitions with such a segment are redone (within a time budget) and counted in the output."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = Path("/proc/stat").exists()

    def _sample(self) -> tuple[float, float, float]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        own = os.times()
        return (user + nice + system + irq + softirq + steal) / self.tick, own.user + own.system, time.perf_counter()

    def measure(self, fn):
        """(fn's result, other processes' average load in cores during fn)."""
        if not self.available:
            return fn(), 0.0
        busy0, own0, t0 = self._sample()
        result = fn()
        busy1, own1, t1 = self._sample()
        return result, max(0.0, (busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9)


def bench_case(name: str, sections: dict, epochs: int, reps: int, tmp: Path, log_file, max_other: float,
               budget_s: float) -> dict:
    probe_every = BASE_DEFAULTS["train"]["probe_every"]
    with_probe, without_probe = resolved_config(sections, probe_every), resolved_config(sections, NO_PROBE)
    store = Store(tmp / f"runs-{name}", create=True)
    _, (probe_id, noprobe_id) = store.create_experiment(name, None, sections, {}, [with_probe, without_probe])
    ctx = mx.cpu()
    loops = {
        "bare": BareLoop(with_probe, ctx, read_every=with_probe["train"]["log_every"]),
        "bare_noread": BareLoop(with_probe, ctx, read_every=None),
        "mxdash": MxdashLoop(store, probe_id, log_file),
        "mxdash_noprobe": MxdashLoop(store, noprobe_id, log_file),
    }
    for loop in loops.values():  # warm-up: first epoch (hybridize, first allocations) of every loop
        loop.run_epochs(1)
    load = OtherLoad()
    clean: dict[str, list[float]] = {key: [] for key in loops}
    dirty: dict[str, list[float]] = {key: [] for key in loops}
    order = list(loops)
    attempts, deadline = 0, time.perf_counter() + budget_s
    while len(clean["bare"]) < reps and (time.perf_counter() < deadline or attempts < 3):
        rotation = order[attempts % len(order):] + order[:attempts % len(order)]
        attempts += 1
        rep, worst = {}, 0.0
        for key in rotation:
            (seconds, samples), other = load.measure(lambda: loops[key].run_epochs(epochs))
            rep[key], worst = samples / seconds, max(worst, other)
        for key, rate in rep.items():
            (clean if worst <= max_other else dirty)[key].append(rate)
    enough = len(clean["bare"]) >= 3
    rates = clean if enough else {key: clean[key] + dirty[key] for key in loops}
    paired = lambda a, b: statistics.median(x / y for x, y in zip(rates[a], rates[b]))  # noqa: E731
    run = loops["mxdash"].run
    return {
        "name": name, "rates": {key: statistics.median(values) for key, values in rates.items()},
        "ratio": paired("mxdash", "bare"), "ratio_noread": paired("mxdash", "bare_noread"),
        "probe_cost": paired("mxdash_noprobe", "mxdash") - 1.0,
        "probe_layers": len(run.probe.layers) if run.probe.block is not None else 0,
        "clean": len(clean["bare"]), "attempts": attempts, "contended": not enough,
        "steps": epochs * run.steps_per_epoch, "steps_per_epoch": run.steps_per_epoch,
        "batch_size": run.batch_size, "log_every": run.log_every, "probe_every": run.probe_every,
        "probe_batch": with_probe["train"]["probe_batch"], "optimizer": with_probe["optimizer"]["name"],
        "all": rates,
    }


def run_one_case(name: str, reps: int, max_other: float, budget: float) -> dict:
    description, sections, epochs = CASES[name]
    sections = {k: dict(v) for k, v in sections.items()}
    with tempfile.TemporaryDirectory(prefix="mxdash-train-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if sections["data"]["name"] == "mnist":
            write_fake_mnist(tmp / "mnist", MNIST_LIKE_SAMPLES)
            sections["data"]["root"] = str(tmp / "mnist")
        with open(tmp / "log.txt", "w") as log_file:
            t0 = time.perf_counter()
            result = bench_case(name, sections, epochs, reps, tmp, log_file, max_other, budget)
    result["description"], result["seconds"] = description, time.perf_counter() - t0
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (5 instead of 9)")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 9, quick 5)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--verbose", action="store_true", help="also print every segment's samples/s")
    parser.add_argument("--max-other", type=float, default=0.15,
                        help="redo a repetition when other processes used more than this many cores meanwhile")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per net after which contended repetitions are no longer redone "
                             "(default 30, quick 15)")
    parser.add_argument("--one-case", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reps = args.reps or (5 if args.quick else 9)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {','.join(CASES)}")

    budget = args.budget if args.budget is not None else (15.0 if args.quick else 30.0)
    if args.one_case:  # child: one net in a fresh process, result as JSON on stdout
        print(json.dumps(run_one_case(args.one_case, reps, args.max_other, budget)))
        return 0

    started = time.perf_counter()
    results = []
    for name in names:
        # One process per net: nets trained earlier in the same process slow later ones (seen: the LSTM ran at
        # ~0.5x after the 28x28 CNN), and a worker trains one run per process anyway.
        child = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one-case", name,
                                "--reps", str(reps), "--max-other", str(args.max_other), "--budget", str(budget)],
                               stdout=subprocess.PIPE, text=True)
        if child.returncode != 0:
            print(f"# {name}: failed (exit code {child.returncode})", file=sys.stderr)
            return 1
        result = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"# {name}: {result['clean']} clean repetitions of {result['attempts']} in "
              f"{result['seconds']:.0f} s", file=sys.stderr, flush=True)

    print(f"mxnet {mx.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {os.cpu_count()} cores; "
          f"medians of "
          f"up to {reps} interleaved repetitions; steady state (warm-up epoch excluded); training time only: "
          f"validation (both loops) and checkpoints (mxdash) excluded\n")
    print("| net | bare samples/s (loss read every log_every) | bare, no reads | mxdash samples/s | ratio "
          "| ratio vs no reads | probe cost % | clean reps |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        rates = r["rates"]
        clean = f"{r['clean']}/{r['attempts']}" + (" CONTENDED: all reps used" if r["contended"] else "")
        probe = (f"{100 * r['probe_cost']:+.1f}" if r["probe_layers"]
                 else f"n/a (no ReLU: {100 * r['probe_cost']:+.1f} = noise)")
        print(f"| {r['description']} | {rates['bare']:,.0f} | {rates['bare_noread']:,.0f} | {rates['mxdash']:,.0f} "
              f"| {r['ratio']:.3f} | {r['ratio_noread']:.3f} | {probe} | {clean} |")
    print()
    print("| net | batch | optimizer | steps/segment (steps/epoch) | log_every | probe_every | probe batch "
          "| mxdash no-probe samples/s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['name']} | {r['batch_size']} | {r['optimizer']} | {r['steps']} ({r['steps_per_epoch']}) "
              f"| {r['log_every']} | {r['probe_every']} | {r['probe_batch']} | {r['rates']['mxdash_noprobe']:,.0f} |")
    if args.verbose:
        print()
        for r in results:
            for key, values in r["all"].items():
                print(f"{r['name']:6s} {key:15s} " + " ".join(f"{v:9,.0f}" for v in values))
    print(f"\nratio = median over repetitions of mxdash / bare (loss read every log_every steps) samples/s, measured "
          f"back to back; probe cost = mxdash without probe / with probe - 1. A repetition is clean when other "
          f"processes used <= {args.max_other:g} cores during it. Total {time.perf_counter() - started:.0f} s.")
    bad = [r["name"] for r in results if r["ratio"] < 0.97 or (r["probe_layers"] and r["probe_cost"] > 0.05)]
    if bad:
        print(f"below target (ratio >= 0.97, probe <= 5%): {', '.join(bad)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
