"""BNLL -> Softplus: onnxruntime's log(1 + eˣ) equals Caffe's x + log(1 + e^−x) (x > 0) within
float32 (tests/test_export_issue17.py checks it out to |x| = 100)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("BNLL")
def bnll(graph, layer, bottoms, tops, shapes):
    graph.node("Softplus", bottoms, tops, name=layer.name)
