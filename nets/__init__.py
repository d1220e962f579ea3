"""Registry of Gluon networks. Add a net by dropping a module into this directory that calls `@register`.

Naming convention (the dead-ReLU probe relies on it): every block of a net carries an explicit prefix that starts with
its layer name, e.g. `hidden0_` (Dense) and `hidden0_relu_` (its activation), `conv1_`, `fc0_`, `out_`. The top-level
net has the empty prefix, so symbol node names are stable across builds: `hidden0_relu_fwd`, `conv1_relu_fwd`, ...
The layer a node belongs to is the node name up to its first underscore (see `layer_of`).

This module itself does not import mxnet (the config validator and the dashboard can read DataInfo/NetSpec without
it); the net modules do.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Optional

KINDS = ("vector", "image", "sequence", "tokens")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh")


@dataclass(frozen=True)
class DataInfo:
    """What a net needs to know about its input."""
    kind: str               # 'vector' (N,F) | 'image' (N,C,H,W) | 'sequence' (N,T,F) | 'tokens' (N,T) int ids
    input_shape: tuple      # per-sample shape, e.g. (64,), (1,8,8), (8,8), (T_max,)
    num_classes: int
    vocab_size: Optional[int] = None
    padding_idx: Optional[int] = None


@dataclass
class NetSpec:
    name: str
    build: Callable  # (params: dict, info: DataInfo) -> HybridBlock
    defaults: dict   # every accepted key with its default
    kinds: tuple     # DataInfo.kind values this net accepts
    doc: str


_REGISTRY: dict = {}


def register(name: str, defaults: dict, kinds, doc: str = ""):
    """Decorator registering `build(params, info) -> HybridBlock` under `name`."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"net {name!r}: unknown data kinds {unknown}; known: {list(KINDS)}")

    def decorator(build):
        _REGISTRY[name] = NetSpec(name=name, build=build, defaults=dict(defaults), kinds=tuple(kinds),
                                  doc=doc or (build.__doc__ or "").strip())
        return build
    return decorator


def _import_net_modules():
    # Re-scanned on every call, so a module dropped in while the program runs is found too.
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        full_name = f"{__name__}.{module.name}"
        try:
            importlib.import_module(full_name)
        except Exception as exc:  # a broken user module must say which file it is
            raise ImportError(f"net module {module.name!r} ({module.module_finder.path}) failed to import: "
                              f"{type(exc).__name__}: {exc}") from exc


def available() -> list:
    """Names of all registered nets, after importing every module in the nets/ directory."""
    _import_net_modules()
    return sorted(_REGISTRY)


def get_spec(name: str) -> NetSpec:
    if name not in _REGISTRY:
        available()
    if name not in _REGISTRY:
        raise KeyError(f"unknown net {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def build_net(name: str, params: dict, info: DataInfo):
    """Build (not initialize) net `name` with `params` overriding its defaults."""
    spec = get_spec(name)
    if info.kind not in spec.kinds:
        raise ValueError(f"net {name!r} does not accept {info.kind!r} data (accepts: {', '.join(spec.kinds)})")
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise ValueError(f"net {name!r}: unknown keys {unknown}; accepted: {sorted(spec.defaults)}")
    return spec.build({**spec.defaults, **params}, info)


def takes_valid_length(net) -> bool:
    """True when the net's forward is net(x, valid_length)."""
    return bool(getattr(net, "takes_valid_length", False))


def layer_of(node_name: str) -> str:
    """Layer name of a block or symbol node, e.g. 'hidden0_relu_fwd' -> 'hidden0', 'conv1_fwd' -> 'conv1'."""
    return node_name.split("_", 1)[0]


def activation_block(activation: str, prefix: str, leaky_slope: float = 0.1, key: str = "activation"):
    """A separate activation layer, so its node in the symbolic graph is identifiable (`<prefix><activation>_...`)."""
    from mxnet.gluon import nn

    if activation not in ACTIVATIONS:
        raise ValueError(f"{key} = {activation!r} is not supported; choose one of {', '.join(ACTIVATIONS)}")
    name = f"{prefix}{activation}_"
    if activation == "leaky_relu":
        return nn.LeakyReLU(float(leaky_slope), prefix=name)
    if activation == "elu":
        return nn.ELU(prefix=name)
    return nn.Activation(activation, prefix=name)


def _leaf_blocks(block):
    children = list(block._children.values())
    if not children:
        return [block]
    return [leaf for child in children for leaf in _leaf_blocks(child)]


def _all_blocks(block):
    yield block
    for child in block._children.values():
        yield from _all_blocks(child)


def _size(param) -> int:
    size = 1
    for dim in param.shape:
        size *= dim
    return int(size)


def _shape_of(output):
    if isinstance(output, (list, tuple)):  # e.g. an RNN layer returning (out, states): report the output
        output = output[0]
    return list(output.shape[1:])


def net_summary(net, info: DataInfo, ctx) -> dict:
    """Per-leaf-layer output shapes and parameter counts from one forward pass of 2 dummy samples.

    Shapes are per sample (batch dimension dropped). The net must be initialized and not yet hybridized
    (forward hooks on a hybridized child fire with Symbols only once).
    """
    from mxnet import nd

    if any(getattr(b, "_active", False) for b in _all_blocks(net)):
        raise RuntimeError("net_summary needs a non-hybridized net: call it before net.hybridize()")
    batch = 2
    if info.kind == "tokens":
        data = nd.zeros((batch,) + tuple(info.input_shape), dtype="int32", ctx=ctx)
    else:
        data = nd.zeros((batch,) + tuple(info.input_shape), ctx=ctx)
    args = [data]
    if takes_valid_length(net):
        args.append(nd.full((batch,), info.input_shape[0], dtype="int32", ctx=ctx))

    leaves = _leaf_blocks(net)
    shapes = {}
    handles = []
    try:
        for leaf in leaves:
            def hook(block, _inputs, output, key=id(leaf)):
                shapes[key] = _shape_of(output)
            handles.append(leaf.register_forward_hook(hook))
        net(*args).wait_to_read()
    finally:
        for handle in handles:
            handle.detach()

    # Parameter shapes are final only after the forward pass (deferred initialization).
    layers = []
    for leaf in leaves:
        own_params = leaf.collect_params().values()
        layers.append({"name": leaf.name, "type": type(leaf).__name__,
                       "output_shape": shapes.get(id(leaf), []),
                       "params": sum(_size(p) for p in own_params)})
    all_params = net.collect_params().values()
    return {"layers": layers,
            "total_params": sum(_size(p) for p in all_params),
            "trainable_params": sum(_size(p) for p in all_params if p.grad_req != "null"),
            "input_shape": list(info.input_shape)}
