"""Registry of Gluon networks. Add a net by dropping a module into this directory that calls `@register`, e.g.

    @register("tiny", {"units": 16, "dropout": 0.0}, kinds=("vector",), check=check_tiny)
    def build_tiny(params, info):          # import mxnet inside, so validating an experiment does not need it
        from mxnet.gluon import nn
        ...

where `check_tiny(params, info)` raises `ParamError(key, message)` for parameters this net cannot take (the helpers
`check_int`, `check_int_list`, `check_fraction`, `check_number`, `check_choice` below do the usual ones). The check
runs when an experiment is validated, before any run exists, and again in `build_net`. A module that fails to import
is skipped and remembered (`broken_modules`): the other nets keep working, and asking for one of its nets names the
file and line.

Naming convention (the dead-ReLU probe relies on it): every block of a net carries an explicit prefix that starts with
its layer name, e.g. `hidden0_` (Dense) and `hidden0_relu_` (its activation), `conv1_`, `fc0_`, `out_`. The top-level
net has the empty prefix, so symbol node names are stable across builds: `hidden0_relu_fwd`, `conv1_relu_fwd`, ...
The layer a node belongs to is the node name up to its first underscore (see `layer_of`).

This module itself does not import mxnet (the config validator and the dashboard can read DataInfo/NetSpec without
it); the net modules do.
"""
from __future__ import annotations

import importlib
import math
import pkgutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

KINDS = ("vector", "image", "sequence", "tokens")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh")
MAX_INT = 2**31 - 1  # MXNet sizes are int32


@dataclass(frozen=True)
class DataInfo:
    """What a net needs to know about its input."""
    kind: str               # 'vector' (N,F) | 'image' (N,C,H,W) | 'sequence' (N,T,F) | 'tokens' (N,T) int ids
    input_shape: tuple      # per-sample shape, e.g. (64,), (1,8,8), (8,8), (T_max,)
    num_classes: int
    vocab_size: Optional[int] = None  # None while validating: known only once the vocabulary is built
    padding_idx: Optional[int] = None


class ParamError(ValueError):
    """A net (or dataset) parameter the user must fix; `key` is the parameter's name inside its section."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


@dataclass
class NetSpec:
    name: str
    build: Callable  # (params: dict, info: DataInfo) -> HybridBlock
    defaults: dict   # every accepted key with its default
    kinds: tuple     # DataInfo.kind values this net accepts
    doc: str
    check: Optional[Callable] = None  # (params, info) -> None, raises ParamError; must not need mxnet


_REGISTRY: dict = {}
_BROKEN: dict = {}  # module name -> why it failed to import ("nets/foo.py line 3: SyntaxError: ...")


def register(name: str, defaults: dict, kinds, doc: str = "", check: Optional[Callable] = None):
    """Decorator registering `build(params, info) -> HybridBlock` under `name`.

    `check(params, info)` validates the net's parameters (all keys, defaults filled in) against the data before
    anything is built, raising ParamError(key, message). It runs when an experiment is validated, so it must not
    import mxnet; keep mxnet imports inside `build` so validating an experiment stays fast.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"net {name!r}: unknown data kinds {unknown}; known: {list(KINDS)}")

    def decorator(build):
        _REGISTRY[name] = NetSpec(name=name, build=build, defaults=dict(defaults), kinds=tuple(kinds),
                                  doc=doc or (build.__doc__ or "").strip(), check=check)
        return build
    return decorator


def _import_error(module_name: str, path: str, exc: Exception) -> str:
    """'nets/foo.py line 3: SyntaxError: invalid syntax': the module's own line that failed."""
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    if line is None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == Path(path)]
        line = frames[-1].lineno if frames else None
    where = f"{path} line {line}" if line else path
    detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    return f"{where}: {type(exc).__name__}: {detail}"


def _import_net_module(module_name: str, path: str) -> None:
    full_name = f"{__name__}.{module_name}"
    if full_name in sys.modules or module_name in _BROKEN:
        return
    try:
        importlib.import_module(full_name)
    except Exception as exc:  # a broken user module must not take the other nets down: remember why it failed
        sys.modules.pop(full_name, None)
        _BROKEN[module_name] = _import_error(module_name, path, exc)


def _net_modules():
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            yield module.name, str(Path(module.module_finder.path) / f"{module.name}.py")


def _import_net_modules():
    # Re-scanned on every call, so a module dropped in while the program runs is found too.
    for name, path in _net_modules():
        _import_net_module(name, path)


def available() -> list:
    """Names of all registered nets, after importing every module in the nets/ directory (broken ones skipped:
    see `broken_modules`)."""
    _import_net_modules()
    return sorted(_REGISTRY)


def broken_modules() -> dict:
    """Net modules that failed to import: module name -> 'path line N: error'."""
    return dict(_BROKEN)


def get_spec(name: str) -> NetSpec:
    """The net registered as `name`. Tries the module of the same name first, so validating an experiment
    imports only the net it uses; scans every module otherwise."""
    if name not in _REGISTRY:
        for module_name, path in _net_modules():
            if module_name == name:
                _import_net_module(module_name, path)
    if name not in _REGISTRY:
        available()
    if name not in _REGISTRY:
        raise KeyError(unknown_net_message(name))
    return _REGISTRY[name]


def unknown_net_message(name: str) -> str:
    if name in _BROKEN:
        return f"net module {_BROKEN[name]}"
    message = f"unknown net {name!r} (available: {', '.join(sorted(_REGISTRY))})"
    if _BROKEN:
        message += "; net modules that failed to import: " + "; ".join(_BROKEN.values())
    return message


def check_params(name: str, params: dict, info: DataInfo) -> dict:
    """Validate net `name`'s parameters for data `info` (no mxnet needed). Returns all parameters, defaults
    filled in. Raises ParamError naming the key ("name" for a net that does not take this kind of data)."""
    spec = get_spec(name)
    if info.kind not in spec.kinds:
        raise ParamError("name", f"net {name!r} takes {' or '.join(spec.kinds)} data, not {info.kind} data")
    unknown = sorted(set(params) - set(spec.defaults) - {"name"})
    if unknown:
        raise ParamError(unknown[0], f"unknown key (accepted: {', '.join(sorted(spec.defaults))})")
    full = {**spec.defaults, **{k: v for k, v in params.items() if k != "name"}}
    if spec.check is not None:
        spec.check(full, info)
    return full


def build_net(name: str, params: dict, info: DataInfo):
    """Build (not initialize) net `name` with `params` overriding its defaults. The net's own checks run first
    (experiments were validated already: this is the safety net for other callers)."""
    full = check_params(name, params, info)
    return get_spec(name).build(full, info)


# -- parameter checks shared by the nets (each raises ParamError naming the key) ---------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(params: dict, key: str, low: int = 1, high: int = MAX_INT) -> int:
    value = params[key]
    if not _is_int(value) or not low <= value <= high:
        raise ParamError(key, f"expected an integer in [{low}, {high}], got {value!r}")
    return value


def check_int_list(params: dict, key: str, low: int = 1, high: int = MAX_INT, allow_empty: bool = True) -> list:
    values = params[key]
    if not isinstance(values, list) or not all(_is_int(v) and low <= v <= high for v in values) or \
            (not values and not allow_empty):
        what = "a list" if allow_empty else "a non-empty list"
        raise ParamError(key, f"expected {what} of integers in [{low}, {high}], got {values!r}")
    return values


def check_fraction(params: dict, key: str) -> float:
    """A probability such as a dropout rate: a number in [0, 1)."""
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ParamError(key, f"expected a number in [0, 1), got {value!r}")
    return float(value)


def check_number(params: dict, key: str, low: float = float("-inf"), high: float = float("inf")) -> float:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
            not low <= value <= high:
        raise ParamError(key, f"expected a finite number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def check_choice(params: dict, key: str, choices) -> str:
    value = params[key]
    if value not in choices:
        raise ParamError(key, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def check_activation(params: dict, key: str = "activation") -> str:
    activation = check_choice(params, key, ACTIVATIONS)
    if activation == "leaky_relu" and "leaky_slope" in params:
        check_number(params, "leaky_slope", 0.0, 1.0)
    return activation


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
