"""The replication harness: specs, training runs, run folders, reports, replicate, export-onnx."""
