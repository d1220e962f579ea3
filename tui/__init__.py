"""The mxdash dashboard (Textual). Never imports mxnet: it reads the run store."""
