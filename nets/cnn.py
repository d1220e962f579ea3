"""LeNet-style CNN: per stage Conv2D -> activation -> MaxPool, then Dense hidden layers and the output Dense."""
from mxnet.gluon import nn

from nets import activation_block, register

DEFAULTS = {"channels": [16, 32], "kernels": [3, 3], "strides": [1, 1], "padding": [1, 1], "pool": 2,
            "hidden": [64], "activation": "relu", "dropout": 0.0, "leaky_slope": 0.1}


def _per_stage(params, key, n_stages):
    value = params[key]
    values = [value] * n_stages if isinstance(value, int) else list(value)
    if len(values) != n_stages and values and len(set(values)) == 1:  # [3, 3] means "3 everywhere"
        values = values[:1] * n_stages
    if len(values) != n_stages:
        raise ValueError(f"{key} = {value} needs one entry per conv stage ({n_stages}, from channels)")
    return [int(v) for v in values]


def conv_output_sizes(params, input_shape):
    """Spatial (H, W) after each stage and whether that stage pools; ValueError naming the key if a size is <= 0."""
    channels = list(params["channels"])
    kernels = _per_stage(params, "kernels", len(channels))
    strides = _per_stage(params, "strides", len(channels))
    padding = _per_stage(params, "padding", len(channels))
    pool = int(params["pool"])
    if pool < 1:
        raise ValueError(f"pool = {pool} must be >= 1 (1 = no pooling)")
    if any(s < 1 for s in strides):
        raise ValueError(f"strides = {strides} must all be >= 1")
    height, width = input_shape[1], input_shape[2]
    stages = []
    for i, (k, s, p) in enumerate(zip(kernels, strides, padding)):
        height = (height + 2 * p - k) // s + 1
        width = (width + 2 * p - k) // s + 1
        if height <= 0 or width <= 0:
            raise ValueError(f"conv stage {i}: output size {height}x{width} <= 0 for input {input_shape}; "
                             f"reduce kernels[{i}]={k} or strides[{i}]={s}, or raise padding[{i}]={p}")
        # Pool only while the map stays at least 1x1 after pooling.
        pools = pool > 1 and height >= pool and width >= pool
        if pools:
            height, width = height // pool, width // pool
        stages.append((height, width, pools))
    return stages


@register("cnn", DEFAULTS, kinds=("image",),
          doc="Conv2D -> activation -> MaxPool stages, then Dense layers. Layers conv0.., fc0.., out.")
def build_cnn(params, info):
    if len(info.input_shape) != 3:
        raise ValueError(f"cnn needs (C, H, W) input, got {info.input_shape}")
    channels = [int(c) for c in params["channels"]]
    if any(c <= 0 for c in channels):
        raise ValueError(f"channels = {channels}: every stage needs at least 1 channel")
    stages = conv_output_sizes(params, info.input_shape)
    kernels = _per_stage(params, "kernels", len(channels))
    strides = _per_stage(params, "strides", len(channels))
    padding = _per_stage(params, "padding", len(channels))
    pool = int(params["pool"])
    dropout = float(params["dropout"])
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout = {dropout} must be in [0, 1)")

    net = nn.HybridSequential(prefix="")  # stable node names, see nets/__init__.py
    with net.name_scope():
        for i, (c, k, s, p, (_, _, pools)) in enumerate(zip(channels, kernels, strides, padding, stages)):
            layer = f"conv{i}_"
            net.add(nn.Conv2D(c, kernel_size=k, strides=s, padding=p, prefix=layer))
            net.add(activation_block(params["activation"], layer, params["leaky_slope"]))
            if pools:
                net.add(nn.MaxPool2D(pool_size=pool, strides=pool, prefix=f"{layer}pool_"))
        net.add(nn.Flatten(prefix="flatten_"))
        for i, units in enumerate(params["hidden"]):
            layer = f"fc{i}_"
            net.add(nn.Dense(int(units), prefix=layer))
            net.add(activation_block(params["activation"], layer, params["leaky_slope"]))
            if dropout > 0:
                net.add(nn.Dropout(dropout, prefix=f"{layer}dropout_"))
        net.add(nn.Dense(info.num_classes, prefix="out_"))
    return net
