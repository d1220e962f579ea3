"""One run across processes with MXNet's own parameter server (docs/scale.md): is `kvstore='dist_sync'` exact?

    .venv/bin/python benchmarks/dist_sync_check.py [--workers 2] [--steps 200]

Launches 2 workers + 1 server + the scheduler on this machine with MXNet's launcher (mxnet/tools/launch.py with
dmlc_tracker, `--launcher local`), each worker training the digits MLP on its half of every batch; then trains the
same net in one process on the whole batches, and compares the weights. Prints the largest difference.

MXNet 1.9.1's launcher fails on Python >= 3.9 (dmlc_tracker calls Thread.isAlive, removed in 3.9): this script
runs it with the one-line shim `threading.Thread.isAlive = threading.Thread.is_alive`.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PER_WORKER = 32


def train(mode: str, out: Path, workers: int, steps: int, local_updates: bool) -> None:
    """One process's training: `dist` under the launcher (a worker; server/scheduler roles never get here), or
    `single`, the reference on the combined batches."""
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype("float32"), y.astype("float32")
    kv = mx.kv.create("dist_sync") if mode == "dist" else None
    rank = kv.rank if kv else 0
    mx.random.seed(1)
    np.random.seed(1)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(32, activation="relu"), gluon.nn.Dense(10))
    net.initialize(mx.init.Xavier())
    net(mx.nd.array(x[:1]))
    # update_on_kvstore=False: each worker applies the summed gradients itself and keeps the optimizer state (the
    # default for dist_sync runs the optimizer on the servers)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                            kvstore=kv or "device", update_on_kvstore=False if (kv and local_updates) else None)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    batch = PER_WORKER * workers
    for step in range(steps):
        start = (step * batch) % (len(x) - batch)
        xb, yb = x[start:start + batch], y[start:start + batch]
        if kv:  # this worker's share of the combined batch
            xb, yb = xb[rank::kv.num_workers], yb[rank::kv.num_workers]
        with autograd.record():
            loss = loss_fn(net(mx.nd.array(xb)), mx.nd.array(yb))
        loss.backward()
        trainer.step(batch)  # the server sums the workers' gradients: the mean over the combined batch
    weights = np.concatenate([p.data().asnumpy().ravel() for p in net.collect_params().values()])
    np.save(out / f"{mode}-{rank}.npy", weights)
    try:  # what a checkpoint needs: the optimizer state (momentum), as mxdash saves it
        trainer.save_states(str(out / f"{mode}-{rank}.states"))
        saved = "saved"
    except Exception as e:
        saved = f"{type(e).__name__}: {e}".splitlines()[0]
    (out / f"{mode}-{rank}.saved").write_text(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--local-updates", action="store_true",
                        help="update_on_kvstore=False: workers keep the optimizer state, so it can be checkpointed")
    parser.add_argument("--train", choices=("dist", "single"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train:
        return train(args.train, args.out, args.workers, args.steps, args.local_updates)

    import mxnet
    import numpy as np

    out = Path(tempfile.mkdtemp(prefix="mxdash-dist-"))
    launch = Path(mxnet.__file__).parent / "tools" / "launch.py"
    shim = ("import runpy, sys, threading; threading.Thread.isAlive = threading.Thread.is_alive; "
            f"sys.argv = [{str(launch)!r}] + sys.argv[1:]; runpy.run_path({str(launch)!r}, run_name='__main__')")
    me = [sys.executable, os.path.abspath(__file__), "--workers", str(args.workers), "--steps", str(args.steps),
          "--out", str(out)] + (["--local-updates"] if args.local_updates else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", shim, "-n", str(args.workers), "-s", "1", "--launcher", "local",
                    *me, "--train", "dist"], check=True, env=env, timeout=600)
    subprocess.run([*me, "--train", "single"], check=True, env=env, timeout=600)
    workers = [np.load(out / f"dist-{r}.npy") for r in range(args.workers)]
    single = np.load(out / "single-0.npy")
    digest = {hashlib.sha1(w.tobytes()).hexdigest()[:12] for w in workers}
    where = "on the workers (update_on_kvstore=False)" if args.local_updates else "on the server (default)"
    print(f"{args.workers} workers + 1 server, dist_sync, {args.steps} steps of momentum SGD on {single.size} "
          f"weights, optimizer {where}")
    print(f"workers hold identical weights: {'yes' if len(digest) == 1 else 'NO'} ({', '.join(sorted(digest))})")
    print(f"largest |dist_sync - one process on the whole batches|: {np.abs(workers[0] - single).max():.2e} "
          f"(largest weight {np.abs(single).max():.2f})")
    print(f"trainer.save_states on worker 0: {(out / 'dist-0.saved').read_text()}")


if __name__ == "__main__":
    main()
