"""One ONNX converter per Caffe layer type (registered with ``runtime.export.registry``)."""
