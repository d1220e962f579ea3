"""mxdash experiment engine: config, data, training loop, run store, CLI. Imports no Textual."""
