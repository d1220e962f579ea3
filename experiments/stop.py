"""A stop request from outside the training loop (SIGTERM from `mxdash stop`, SIGINT), read at every step.

Its own tiny module so a worker installs it before importing mxnet: a stop that arrives during the imports or
the claim is honoured (the run ends `stopped`), never a kill by the default SIGTERM action (`lost (signal 15)`).
"""
from __future__ import annotations

import signal


class StopSignal:
    def __init__(self):
        self.requested = False

    def install(self) -> "StopSignal":
        def request(signum, frame):
            self.requested = True

        signal.signal(signal.SIGTERM, request)
        signal.signal(signal.SIGINT, request)
        return self
