"""The replication harness: reproduction specs, training runs through the runtime, reports, `replicate`."""
