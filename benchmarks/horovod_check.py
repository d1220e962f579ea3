"""The same check as dist_sync_check.py with Horovod 0.28.1 (horovod.mxnet over Gloo), for docs/scale.md.

Horovod is not an mxdash dependency; what was done, in a separate venv with mxnet 1.9.1 + numpy 1.23.5:

    pip install wheel setuptools cloudpickle psutil pyyaml packaging
    HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
        HOROVOD_WITHOUT_PYTORCH=1 pip install --no-build-isolation horovod==0.28.1
    OMP_NUM_THREADS=1 horovodrun -np 2 -H localhost:2 --gloo python benchmarks/horovod_check.py OUT_DIR

Each rank prints a digest of its final weights (compare with dist_sync_check.py: same net, data, seeds, batches).
"""
import hashlib
import sys
import numpy as np
import mxnet as mx
from mxnet import autograd, gluon
import horovod.mxnet as hvd
from sklearn.datasets import load_digits

hvd.init()
x, y = load_digits(return_X_y=True)
x, y = (x / 16.0).astype("float32"), y.astype("float32")
mx.random.seed(1); np.random.seed(1)
net = gluon.nn.HybridSequential()
net.add(gluon.nn.Dense(32, activation="relu"), gluon.nn.Dense(10))
net.initialize(mx.init.Xavier())
net(mx.nd.array(x[:1]))
params = net.collect_params()
hvd.broadcast_parameters(params, root_rank=0)
trainer = hvd.DistributedTrainer(params, "sgd", {"learning_rate": 0.1, "momentum": 0.9})
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
per_worker, batch = 32, 64
for step in range(200):
    start = (step * batch) % (len(x) - batch)
    xb, yb = x[start:start + batch][hvd.rank()::hvd.size()], y[start:start + batch][hvd.rank()::hvd.size()]
    with autograd.record():
        loss = loss_fn(net(mx.nd.array(xb)), mx.nd.array(yb))
    loss.backward()
    trainer.step(per_worker)  # gradients averaged over the workers: the mean over the combined batch
w = np.concatenate([p.data().asnumpy().ravel() for p in params.values()])
np.save(f"{sys.argv[1]}/hvd-{hvd.rank()}.npy", w)
try:
    trainer.save_states(f"{sys.argv[1]}/hvd-{hvd.rank()}.states")
    saved = "saved"
except Exception as e:
    saved = repr(e)[:200]
print("rank", hvd.rank(), "of", hvd.size(), hashlib.sha1(w.tobytes()).hexdigest()[:12], saved, flush=True)
