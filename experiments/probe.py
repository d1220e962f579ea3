"""Dead-ReLU probe: the fraction of units (conv: channels) of every ReLU layer that output 0 for every sample of a
fixed probe batch, computed inside the graph and read with one `.asnumpy()`.

Forward hooks don't fire on hybridized children and op hooks miss activations with static_shape (FACTS.md), so
the probe is its own SymbolBlock over the net's internal ReLU outputs, sharing the net's parameters: each ReLU
output is reduced to one number in the graph (max over the batch -> "never positive" -> mean), and the numbers are
concatenated. Conv outputs go through global max pooling first (a generic max over (0,2,3) is ~30x slower).
LeakyReLU layers are probed the same way: their units are never dead (the gradient flows), but the fraction stuck
on the negative side for every sample is the comparable number, and it shows whether units recover.
"""
from __future__ import annotations

import json
import warnings

import mxnet as mx
from mxnet import gluon

PROBED_ACTIVATIONS = {("Activation", "relu"), ("LeakyReLU", "leaky")}


def activation_nodes(symbol: mx.sym.Symbol) -> list[str]:
    """Names of the ReLU / leaky ReLU nodes of a symbolic graph, in graph order."""
    nodes = json.loads(symbol.tojson())["nodes"]
    return [node["name"] for node in nodes
            if (node["op"], node.get("attrs", {}).get("act_type")) in PROBED_ACTIVATIONS]


def layer_label(node_name: str, net_prefix: str) -> str:
    """`mlp0_hidden1_relu0_fwd` -> `hidden1`: the owning block, which is what a user calls the layer."""
    name = node_name[len(net_prefix):] if node_name.startswith(net_prefix) else node_name
    name = name[:-len("_fwd")] if name.endswith("_fwd") else name
    return name.split("_")[0] if "_" in name else name


def _never_positive_fraction(output: mx.sym.Symbol, ndim: int) -> mx.sym.Symbol:
    if ndim == 4:  # (N, C, H, W): a channel is dead when it is 0 at every position of every sample
        output = mx.sym.Pooling(output, global_pool=True, pool_type="max", kernel=(1, 1)).reshape((0, -1))
    axes = (0,) if ndim in (2, 4) else tuple(range(ndim - 1))  # (N, U) or (N, T, U): max over all but units
    unit_max = mx.sym.max(output, axis=axes)
    return mx.sym.mean(unit_max <= 0).reshape((1,))


class DeadReluProbe:
    """Build once per net; `probe.read()` -> {layer: dead fraction} on the fixed probe batch."""

    def __init__(self, net: gluon.HybridBlock, probe_data: mx.nd.NDArray, valid_length=None):
        inputs = [mx.sym.var("data")] + ([mx.sym.var("valid_length")] if valid_length is not None else [])
        internals = net(*inputs).get_internals()
        nodes = activation_nodes(internals)
        self.layers = self._unique_labels([layer_label(n, net.prefix) for n in nodes])
        self.args = [probe_data] + ([valid_length] if valid_length is not None else [])
        self.block = None
        if not nodes:
            return
        outputs = [internals[f"{n}_output"] for n in nodes]
        shapes = {k: v.shape for k, v in zip(["data", "valid_length"], self.args)}
        _, out_shapes, _ = mx.sym.Group(outputs).infer_shape_partial(**shapes)
        fractions = [_never_positive_fraction(o, len(s)) for o, s in zip(outputs, out_shapes)]
        with warnings.catch_warnings():  # "Cannot decide type for data": the probe batch gives it at first call
            warnings.simplefilter("ignore", UserWarning)
            self.block = gluon.SymbolBlock(mx.sym.concat(*fractions, dim=0), inputs, params=net.collect_params())
        self.block.hybridize(static_alloc=True, static_shape=True)

    @staticmethod
    def _unique_labels(labels: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        unique = []
        for label in labels:
            seen[label] = seen.get(label, 0) + 1
            unique.append(label if seen[label] == 1 else f"{label}.{seen[label] - 1}")
        return unique

    def read(self) -> dict[str, float]:
        if self.block is None:
            return {}
        values = self.block(*self.args).asnumpy()
        return {layer: float(v) for layer, v in zip(self.layers, values)}
