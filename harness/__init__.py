"""The replication harness: reproduction specs, training runs through the runtime, their run
folders, reports, `replicate` and `export-onnx`."""
