"""Multi-layer perceptron: Dense -> activation (-> Dropout) per hidden layer, then the output Dense."""
from nets import activation_block, check_activation, check_fraction, check_int_list, register

DEFAULTS = {"hidden": [128, 64], "activation": "relu", "dropout": 0.0, "leaky_slope": 0.1}


def check_mlp(params, info):
    check_int_list(params, "hidden")  # [] is a linear model
    check_activation(params)
    check_fraction(params, "dropout")


@register("mlp", DEFAULTS, kinds=("vector", "image"), check=check_mlp,
          doc="Fully connected layers; image input is flattened. Layers hidden0.., out.")
def build_mlp(params, info):
    from mxnet.gluon import nn

    dropout = float(params["dropout"])
    # Prefix '' at the top so node names (hidden0_relu_fwd, ...) do not depend on how many nets were built before.
    net = nn.HybridSequential(prefix="")
    with net.name_scope():
        for i, units in enumerate(params["hidden"]):
            layer = f"hidden{i}_"
            net.add(nn.Dense(int(units), prefix=layer))  # Dense flattens (N,C,H,W) input itself
            net.add(activation_block(params["activation"], layer, params["leaky_slope"]))
            if dropout > 0:
                net.add(nn.Dropout(dropout, prefix=f"{layer}dropout_"))
        net.add(nn.Dense(info.num_classes, prefix="out_"))
    return net
