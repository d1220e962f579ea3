"""Multi-layer perceptron: Dense -> activation (-> Dropout) per hidden layer, then the output Dense."""
from mxnet.gluon import nn

from nets import activation_block, register

DEFAULTS = {"hidden": [128, 64], "activation": "relu", "dropout": 0.0, "leaky_slope": 0.1}


@register("mlp", DEFAULTS, kinds=("vector", "image"),
          doc="Fully connected layers; image input is flattened. Layers hidden0.., out.")
def build_mlp(params, info):
    hidden = list(params["hidden"])
    if any(int(units) <= 0 for units in hidden):
        raise ValueError(f"hidden = {hidden}: every layer needs at least 1 unit")
    dropout = float(params["dropout"])
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout = {dropout} must be in [0, 1)")

    # Prefix '' at the top so node names (hidden0_relu_fwd, ...) do not depend on how many nets were built before.
    net = nn.HybridSequential(prefix="")
    with net.name_scope():
        for i, units in enumerate(hidden):
            layer = f"hidden{i}_"
            net.add(nn.Dense(int(units), prefix=layer))  # Dense flattens (N,C,H,W) input itself
            net.add(activation_block(params["activation"], layer, params["leaky_slope"]))
            if dropout > 0:
                net.add(nn.Dropout(dropout, prefix=f"{layer}dropout_"))
        net.add(nn.Dense(info.num_classes, prefix="out_"))
    return net
