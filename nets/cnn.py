"""LeNet-style CNN: per stage Conv2D -> activation -> MaxPool, then Dense hidden layers and the output Dense."""
from nets import (ParamError, activation_block, check_activation, check_fraction, check_int, check_int_list,
                  register)

DEFAULTS = {"channels": [16, 32], "kernels": [3, 3], "strides": [1, 1], "padding": [1, 1], "pool": 2,
            "hidden": [64], "activation": "relu", "dropout": 0.0, "leaky_slope": 0.1}


def _per_stage(params, key, n_stages, low=1):
    value = params[key]
    values = check_int_list({key: [value] if isinstance(value, int) else value}, key, low=low, allow_empty=False)
    if len(values) != n_stages and len(set(values)) == 1:  # [3, 3] means "3 everywhere"
        values = values[:1] * n_stages
    if len(values) != n_stages:
        raise ParamError(key, f"{value} needs one entry per conv stage ({n_stages}, from channels)")
    return values


def conv_output_sizes(params, input_shape):
    """Spatial (H, W) after each stage and whether that stage pools; ParamError naming the key if a size is <= 0."""
    channels = check_int_list(params, "channels", allow_empty=False)
    kernels = _per_stage(params, "kernels", len(channels))
    strides = _per_stage(params, "strides", len(channels))
    padding = _per_stage(params, "padding", len(channels), low=0)
    pool = check_int(params, "pool")  # 1 = no pooling
    height, width = input_shape[1], input_shape[2]
    stages = []
    for i, (k, s, p) in enumerate(zip(kernels, strides, padding)):
        height = (height + 2 * p - k) // s + 1
        width = (width + 2 * p - k) // s + 1
        if height <= 0 or width <= 0:
            raise ParamError("kernels", f"conv stage {i}: output size {height}x{width} <= 0 for input "
                                        f"{input_shape}; reduce kernels[{i}]={k} or strides[{i}]={s}, or raise "
                                        f"padding[{i}]={p}")
        # Pool only while the map stays at least 1x1 after pooling.
        pools = pool > 1 and height >= pool and width >= pool
        if pools:
            height, width = height // pool, width // pool
        stages.append((height, width, pools))
    return stages


def check_cnn(params, info):
    if len(info.input_shape) != 3:
        raise ParamError("name", f"cnn needs (C, H, W) images, got samples of shape {info.input_shape}")
    conv_output_sizes(params, info.input_shape)
    check_int_list(params, "hidden")
    check_activation(params)
    check_fraction(params, "dropout")


@register("cnn", DEFAULTS, kinds=("image",), check=check_cnn,
          doc="Conv2D -> activation -> MaxPool stages, then Dense layers. Layers conv0.., fc0.., out.")
def build_cnn(params, info):
    from mxnet.gluon import nn

    channels = params["channels"]
    stages = conv_output_sizes(params, info.input_shape)
    kernels = _per_stage(params, "kernels", len(channels))
    strides = _per_stage(params, "strides", len(channels))
    padding = _per_stage(params, "padding", len(channels), low=0)
    pool = int(params["pool"])
    dropout = float(params["dropout"])

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
