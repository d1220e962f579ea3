"""The LSTM classifier block of nets/lstm.py, kept apart so that registering and checking the net needs no mxnet
(the `_` prefix keeps the registry from scanning it as a net module). How padding is handled: see nets/lstm.py."""
from mxnet import gluon
from mxnet.gluon import nn, rnn

def _reverse_valid(F, x, valid_length):
    """Reverse the first valid_length steps of each (N, T, C) sequence; padding stays where it is."""
    time_major = F.swapaxes(x, 0, 1)  # SequenceReverse supports only axis 0
    reversed_ = F.SequenceReverse(time_major, sequence_length=valid_length, use_sequence_length=True)
    return F.swapaxes(reversed_, 0, 1)


def _last_valid(F, x, valid_length):
    return F.SequenceLast(x, sequence_length=valid_length, use_sequence_length=True, axis=1)


class LSTMClassifier(gluon.HybridBlock):
    takes_valid_length = True

    def __init__(self, info, embed, hidden, layers, dropout, dense, bidirectional):
        super().__init__(prefix="")  # stable block and node names, see nets/__init__.py
        self._bidirectional = bidirectional
        self._layers = layers
        with self.name_scope():
            self.embedding = (nn.Embedding(info.vocab_size, embed, prefix="embed_")
                              if info.kind == "tokens" else None)
            if not bidirectional:
                # One fused multi-layer LSTM; its dropout acts between layers.
                self.lstm = rnn.LSTM(hidden, num_layers=layers, layout="NTC", dropout=dropout, prefix="lstm_")
            else:
                # Separate single-layer directions per layer, so the backward one can skip the padding.
                self.forward_lstms, self.backward_lstms, self.between = [], [], []
                for i in range(layers):
                    forward_lstm = rnn.LSTM(hidden, layout="NTC", prefix=f"lstm{i}_fwd_")
                    backward_lstm = rnn.LSTM(hidden, layout="NTC", prefix=f"lstm{i}_bwd_")
                    self.register_child(forward_lstm, f"lstm{i}_fwd")
                    self.register_child(backward_lstm, f"lstm{i}_bwd")
                    self.forward_lstms.append(forward_lstm)
                    self.backward_lstms.append(backward_lstm)
                    if dropout > 0 and i < layers - 1:
                        between = nn.Dropout(dropout, prefix=f"lstm{i}_dropout_")
                        self.register_child(between, f"lstm{i}_dropout")
                        self.between.append(between)
                    else:
                        self.between.append(None)
            self.head = nn.HybridSequential(prefix="")
            if dropout > 0:  # also regularises a 1-layer LSTM, where the LSTM's own dropout does nothing
                self.head.add(nn.Dropout(dropout, prefix="summary_dropout_"))
            for i, units in enumerate(dense):
                self.head.add(nn.Dense(int(units), prefix=f"fc{i}_"))
                self.head.add(nn.Activation("relu", prefix=f"fc{i}_relu_"))
            self.head.add(nn.Dense(info.num_classes, prefix="out_"))

    def hybrid_forward(self, F, x, valid_length):
        if self.embedding is not None:
            x = self.embedding(x)
        if not self._bidirectional:
            summary = _last_valid(F, self.lstm(x), valid_length)
        else:
            for i in range(self._layers):
                forward_out = self.forward_lstms[i](x)
                backward_out_reversed = self.backward_lstms[i](_reverse_valid(F, x, valid_length))
                if i == self._layers - 1:
                    # Backward summary = its state after reading the whole valid sequence from the end.
                    summary = F.concat(_last_valid(F, forward_out, valid_length),
                                       _last_valid(F, backward_out_reversed, valid_length), dim=1)
                else:
                    x = F.concat(forward_out, _reverse_valid(F, backward_out_reversed, valid_length), dim=2)
                    if self.between[i] is not None:
                        x = self.between[i](x)
        return self.head(summary)
