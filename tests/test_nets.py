"""nets/: registry, shapes, summaries, LSTM padding handling, symbol node names, drop-in discovery."""
import json
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

import nets
from nets import DataInfo

CTX = mx.cpu()
INFOS = {
    "vector": DataInfo("vector", (64,), 10),
    "image": DataInfo("image", (1, 8, 8), 10),
    "sequence": DataInfo("sequence", (8, 8), 10),
    "tokens": DataInfo("tokens", (12,), 3, vocab_size=30, padding_idx=1),
}


def dummy_input(info, batch=4):
    rng = np.random.RandomState(0)
    if info.kind == "tokens":
        x = nd.array(rng.randint(4, info.vocab_size, (batch,) + info.input_shape), dtype="int32")
        return [x, nd.array(rng.randint(1, info.input_shape[0] + 1, batch), dtype="int32")]
    x = nd.array(rng.rand(batch, *info.input_shape))
    if info.kind == "sequence":
        return [x, nd.full((batch,), info.input_shape[0], dtype="int32")]
    return [x]


def node_names(sym, ops=("Activation", "LeakyReLU")):
    graph = json.loads(sym.get_internals().tojson())
    return [node["name"] for node in graph["nodes"] if node["op"] in ops]


def symbol_of(net):
    args = [mx.sym.var("data")] + ([mx.sym.var("valid_length")] if nets.takes_valid_length(net) else [])
    return net(*args)


def test_builtin_nets_are_registered():
    assert {"mlp", "cnn", "lstm"} <= set(nets.available())
    assert nets.get_spec("cnn").kinds == ("image",)
    assert set(nets.get_spec("lstm").kinds) == {"sequence", "tokens"}


@pytest.mark.parametrize("name,kind", [(name, kind) for name in ("mlp", "cnn", "lstm")
                                       for kind in nets.get_spec(name).kinds])
def test_each_net_builds_for_each_kind(name, kind):
    info = INFOS[kind]
    net = nets.build_net(name, {}, info)
    net.initialize(ctx=CTX)
    out = net(*dummy_input(info))
    assert out.shape == (4, info.num_classes)
    assert np.isfinite(out.asnumpy()).all()
    assert nets.takes_valid_length(net) == (name == "lstm")


def test_wrong_kind_and_unknown_keys_are_rejected():
    with pytest.raises(ValueError, match="tokens"):
        nets.build_net("cnn", {}, INFOS["tokens"])
    with pytest.raises(ValueError, match="widht"):
        nets.build_net("mlp", {"widht": 3}, INFOS["vector"])
    with pytest.raises(KeyError, match="mlp"):
        nets.get_spec("no_such_net")


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "sigmoid", "tanh"])
def test_mlp_activations(activation):
    net = nets.build_net("mlp", {"activation": activation, "hidden": [8]}, INFOS["vector"])
    net.initialize(ctx=CTX)
    assert net(*dummy_input(INFOS["vector"])).shape == (4, 10)


def test_mlp_bad_activation_names_the_key():
    with pytest.raises(ValueError, match="activation.*swish"):
        nets.build_net("mlp", {"activation": "swish"}, INFOS["vector"])


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 9, 13)])
def test_cnn_on_different_image_sizes(shape):
    info = DataInfo("image", shape, 7)
    net = nets.build_net("cnn", {}, info)
    net.initialize(ctx=CTX)
    net.hybridize()
    assert net(nd.zeros((2,) + shape)).shape == (2, 7)


def test_cnn_skips_pooling_that_would_empty_the_map():
    # 8x8 -> pool 4 -> 2x2 -> 2x2 stays (2 < 4, no pool) -> 2x2 stays
    info = DataInfo("image", (1, 8, 8), 10)
    net = nets.build_net("cnn", {"channels": [4, 4, 4], "kernels": [3, 3, 3], "strides": [1, 1, 1],
                                 "padding": [1, 1, 1], "pool": 4}, info)
    net.initialize(ctx=CTX)
    summary = nets.net_summary(net, info, CTX)
    shapes = {layer["name"]: layer["output_shape"] for layer in summary["layers"]}
    assert shapes["conv0_pool"] == [4, 2, 2]
    assert "conv1_pool" not in shapes and "conv2_pool" not in shapes
    assert shapes["conv2"] == [4, 2, 2]


def test_cnn_impossible_size_names_the_key():
    with pytest.raises(ValueError, match="kernels"):
        nets.build_net("cnn", {"channels": [4], "kernels": [9], "strides": [1], "padding": [0]},
                       DataInfo("image", (1, 8, 8), 10))
    with pytest.raises(ValueError, match="kernels"):  # distinct per-stage values must match the stage count
        nets.build_net("cnn", {"channels": [4, 4], "kernels": [3, 5, 7]}, DataInfo("image", (1, 8, 8), 10))
    # one value (or all equal values) means "this value at every stage"
    net = nets.build_net("cnn", {"channels": [4, 4, 4], "kernels": [3], "strides": [1, 1]}, DataInfo("image", (1, 8, 8), 10))
    assert [c._kwargs["kernel"] for c in net._children.values() if type(c).__name__ == "Conv2D"] == [(3, 3)] * 3


@pytest.mark.parametrize("name,kind,params", [("mlp", "image", {}), ("cnn", "image", {"dropout": 0.5}),
                                              ("lstm", "tokens", {"dense": [8]}),
                                              ("lstm", "sequence", {"bidirectional": True, "layers": 2})])
def test_net_summary_counts_and_leaves_no_hooks(name, kind, params):
    info = INFOS[kind]
    net = nets.build_net(name, params, info)
    net.initialize(ctx=CTX)
    summary = nets.net_summary(net, info, CTX)
    param_sizes = sum(p.data().size for p in net.collect_params().values())
    assert summary["total_params"] == param_sizes > 0
    assert sum(layer["params"] for layer in summary["layers"]) == param_sizes
    assert summary["trainable_params"] == param_sizes
    assert summary["input_shape"] == list(info.input_shape)
    assert summary["layers"][-1]["name"] == "out"
    assert summary["layers"][-1]["output_shape"] == [info.num_classes]
    assert all(layer["output_shape"] for layer in summary["layers"])

    def all_blocks(block):
        yield block
        for child in block._children.values():
            yield from all_blocks(child)
    assert all(not block._forward_hooks for block in all_blocks(net))
    # The caller can hybridize afterwards and gets the same outputs.
    inputs = dummy_input(info)
    before = net(*inputs).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(net(*inputs).asnumpy(), before, rtol=1e-5, atol=1e-6)


def test_net_summary_mlp_layer_table():
    info = INFOS["vector"]
    net = nets.build_net("mlp", {"hidden": [32, 16]}, info)
    net.initialize(ctx=CTX)
    layers = nets.net_summary(net, info, CTX)["layers"]
    assert [(l["name"], l["type"], l["output_shape"], l["params"]) for l in layers] == [
        ("hidden0", "Dense", [32], 64 * 32 + 32), ("hidden0_relu", "Activation", [32], 0),
        ("hidden1", "Dense", [16], 32 * 16 + 16), ("hidden1_relu", "Activation", [16], 0),
        ("out", "Dense", [10], 16 * 10 + 10)]


def test_net_summary_refuses_a_hybridized_net():
    net = nets.build_net("mlp", {}, INFOS["vector"])
    net.initialize(ctx=CTX)
    net.hybridize()
    with pytest.raises(RuntimeError, match="hybridize"):
        nets.net_summary(net, INFOS["vector"], CTX)


@pytest.mark.parametrize("hybridize", [False, True])
def test_lstm_takes_last_valid_step(hybridize):
    info = DataInfo("tokens", (10,), 3, vocab_size=20, padding_idx=1)
    net = nets.build_net("lstm", {"embed": 6, "hidden": 5}, info)
    net.initialize(mx.init.Xavier(), ctx=CTX)
    sequence = [5, 7, 3, 9]
    # Independent computation: the net's own layers on the unpadded sequence, last time step.
    hidden = net.lstm(net.embedding(nd.array([sequence], dtype="int32")))
    expected = net.head(hidden[:, -1, :]).asnumpy()[0]
    if hybridize:
        net.hybridize()
    padded = nd.array([sequence + [1] * 6, sequence + [1] * 2 + [0] * 4, list(range(2, 12))], dtype="int32")
    logits = net(padded, nd.array([4, 4, 10], dtype="int32")).asnumpy()
    np.testing.assert_allclose(logits[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits[1], expected, rtol=1e-5, atol=1e-6)
    # Reading the final (padded) step instead would give something else: the check above has teeth.
    naive = net.head(net.lstm(net.embedding(padded[0:1]))[:, -1, :]).asnumpy()[0]
    assert np.abs(naive - expected).max() > 1e-4


@pytest.mark.parametrize("params", [{"bidirectional": True}, {"bidirectional": True, "layers": 2},
                                    {"layers": 2, "dense": [4]}])
def test_lstm_extra_padding_does_not_change_logits(params):
    info = DataInfo("sequence", (12, 3), 2)
    net = nets.build_net("lstm", params, info)
    net.initialize(mx.init.Xavier(), ctx=CTX)
    rng = np.random.RandomState(1)
    steps = rng.randn(5, 3)
    alone = net(nd.array(steps[None]), nd.array([5], dtype="int32")).asnumpy()[0]
    net.hybridize()
    padded = np.concatenate([steps, rng.randn(7, 3) * 10])[None]  # large garbage in the padding
    logits = net(nd.array(padded), nd.array([5], dtype="int32")).asnumpy()[0]
    np.testing.assert_allclose(logits, alone, rtol=1e-5, atol=1e-6)


def test_relu_nodes_carry_layer_prefixes():
    mlp = nets.build_net("mlp", {"hidden": [8, 8]}, INFOS["vector"])
    assert node_names(symbol_of(mlp)) == ["hidden0_relu_fwd", "hidden1_relu_fwd"]
    cnn = nets.build_net("cnn", {}, INFOS["image"])
    assert node_names(symbol_of(cnn)) == ["conv0_relu_fwd", "conv1_relu_fwd", "fc0_relu_fwd"]
    leaky = nets.build_net("mlp", {"activation": "leaky_relu", "hidden": [8, 8]}, INFOS["vector"])
    assert [nets.layer_of(n) for n in node_names(symbol_of(leaky), ops=("LeakyReLU",))] == ["hidden0", "hidden1"]
    lstm = nets.build_net("lstm", {"dense": [8]}, INFOS["tokens"])
    assert node_names(symbol_of(lstm), ops=("Activation",)) == ["fc0_relu_fwd"]
    # Names do not depend on how many nets were built before.
    again = nets.build_net("mlp", {"hidden": [8, 8]}, INFOS["vector"])
    assert node_names(symbol_of(again)) == ["hidden0_relu_fwd", "hidden1_relu_fwd"]


def test_dropped_in_module_is_discovered(tmp_path, monkeypatch):
    (tmp_path / "dropin_tiny.py").write_text(textwrap.dedent('''
        from mxnet.gluon import nn
        from nets import register

        @register("dropin_tiny", {"units": 4}, kinds=("vector",), doc="test net")
        def build(params, info):
            net = nn.HybridSequential(prefix="")
            with net.name_scope():
                net.add(nn.Dense(params["units"], prefix="hidden0_"), nn.Dense(info.num_classes, prefix="out_"))
            return net
    '''))
    monkeypatch.setattr(nets, "__path__", list(nets.__path__) + [str(tmp_path)])
    monkeypatch.delitem(nets._REGISTRY, "dropin_tiny", raising=False)
    try:
        assert "dropin_tiny" in nets.available()
        net = nets.build_net("dropin_tiny", {"units": 3}, INFOS["vector"])
        net.initialize(ctx=CTX)
        assert net(nd.zeros((2, 64))).shape == (2, 10)
    finally:
        nets._REGISTRY.pop("dropin_tiny", None)
        sys.modules.pop("nets.dropin_tiny", None)


def test_broken_dropped_in_module_names_file_and_line_and_other_nets_keep_working(tmp_path, monkeypatch):
    (tmp_path / "dropin_broken.py").write_text("import math\n\ndef broken(:\n    pass\n")
    (tmp_path / "dropin_raises.py").write_text("import math\nraise RuntimeError('boom')\n")
    monkeypatch.setattr(nets, "__path__", list(nets.__path__) + [str(tmp_path)])
    monkeypatch.setattr(nets, "_BROKEN", {})
    try:
        assert {"mlp", "cnn", "lstm"} <= set(nets.available())  # the other nets still load
        assert nets.build_net("mlp", {"hidden": [4]}, INFOS["vector"]) is not None
        broken = nets.broken_modules()
        assert broken["dropin_broken"] == f"{tmp_path / 'dropin_broken.py'} line 3: SyntaxError: invalid syntax"
        assert broken["dropin_raises"] == f"{tmp_path / 'dropin_raises.py'} line 2: RuntimeError: boom"
        with pytest.raises(KeyError, match="dropin_broken.py line 3: SyntaxError"):
            nets.get_spec("dropin_broken")  # a net named like its module: the message says why it is missing
        with pytest.raises(KeyError, match=r"unknown net 'nope'.*dropin_raises.py line 2"):
            nets.get_spec("nope")
    finally:
        sys.modules.pop("nets.dropin_broken", None)
        sys.modules.pop("nets.dropin_raises", None)


def test_nets_registry_and_checks_need_no_mxnet():
    """Validating an experiment imports nets/ and its net modules, but not mxnet (refusals must be fast)."""
    import subprocess

    code = ("import sys, nets; from nets import DataInfo; nets.available(); "
            "nets.check_params('cnn', {}, DataInfo('image', (1, 8, 8), 10)); "
            "nets.check_params('lstm', {}, DataInfo('tokens', (12,), 2)); "
            "print('mxnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name, kind, params, key", [
    ("mlp", "vector", {"hidden": [-4]}, "hidden"), ("mlp", "vector", {"hidden": ["a"]}, "hidden"),
    ("mlp", "vector", {"hidden": [1.5]}, "hidden"), ("mlp", "vector", {"dropout": 2.0}, "dropout"),
    ("mlp", "vector", {"activation": "swish"}, "activation"),
    ("mlp", "vector", {"activation": "leaky_relu", "leaky_slope": float("nan")}, "leaky_slope"),
    ("cnn", "image", {"channels": [0]}, "channels"), ("cnn", "image", {"pool": 0}, "pool"),
    ("cnn", "image", {"channels": [4], "kernels": [9], "padding": [0]}, "kernels"),
    ("cnn", "image", {"strides": [0, 0]}, "strides"), ("cnn", "image", {"padding": [-1]}, "padding"),
    ("cnn", "vector", {}, "name"), ("lstm", "vector", {}, "name"), ("mlp", "tokens", {}, "name"),
    ("lstm", "tokens", {"layers": 0}, "layers"), ("lstm", "tokens", {"embed": 0}, "embed"),
    ("lstm", "sequence", {"hidden": 2**31}, "hidden"), ("lstm", "sequence", {"dense": [0]}, "dense"),
    ("mlp", "vector", {"widht": 3}, "widht"),
])
def test_each_net_declares_its_own_checks(name, kind, params, key):
    info = INFOS[kind]
    with pytest.raises(nets.ParamError) as error:
        nets.check_params(name, params, info)
    assert error.value.key == key
    with pytest.raises(ValueError):  # build_net runs the same checks (the worker's safety net)
        nets.build_net(name, params, info)
