"""LSTM sequence classifier over padded batches: forward is net(x, valid_length).

Gluon's LSTM ignores `use_sequence_length` on CPU (only cuDNN honours it), so the padding must be handled here:
the forward direction's summary is its output at the last VALID step (SequenceLast with valid_length), and a
backward direction runs on each sequence with its valid part reversed (padding stays at the end), so no output at a
valid position ever sees padding.
"""
from nets import ParamError, check_fraction, check_int, check_int_list, register

DEFAULTS = {"embed": 32, "hidden": 64, "layers": 1, "dropout": 0.0, "dense": [], "bidirectional": False}


def check_lstm(params, info):
    check_int(params, "hidden")
    check_int(params, "layers")
    if info.kind == "tokens":
        check_int(params, "embed")
    check_fraction(params, "dropout")
    check_int_list(params, "dense")
    if info.kind == "sequence" and len(info.input_shape) != 2:
        raise ParamError("name", f"lstm needs (steps, features) sequences, got samples of shape {info.input_shape}")


@register("lstm", DEFAULTS, kinds=("sequence", "tokens"), check=check_lstm,
          doc="LSTM classifier on the last valid step (forward is net(x, valid_length)). Token input goes "
              "through an Embedding(vocab_size, embed); dense steps are used as they are (embed unused). "
              "dropout acts between LSTM layers and on the LSTM summary. Layers embed, lstm, fc0.., out.")
def build_lstm(params, info):
    from nets._lstm_block import LSTMClassifier

    hidden, layers, embed = int(params["hidden"]), int(params["layers"]), int(params["embed"])
    dropout, dense = float(params["dropout"]), [int(units) for units in params["dense"]]
    if info.kind == "tokens" and not info.vocab_size:
        raise ValueError("lstm on token data needs DataInfo.vocab_size")  # a caller's bug, not a user's input
    return LSTMClassifier(info, embed=embed, hidden=hidden, layers=layers, dropout=dropout, dense=dense,
                          bidirectional=bool(params["bidirectional"]))
