"""The tiny Caffe net with Data layers that allconv-caffe trains in the tests and in
tools/fuzz.py, and its two sources: train.npz (12 samples) and test.npz (10), 2x6x6, 3 classes."""
from pathlib import Path

import numpy as np

from runtime.data.source import save_npz_source

NET = """name: "tiny"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        data_param { source: "train.npz" batch_size: 4 } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
        data_param { source: "test.npz" batch_size: 5 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "msra" } } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "pool" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "pool" bottom: "label" top: "accuracy"
        include { phase: TEST } }
"""


def write_tiny_net(folder: Path, prototxt: str = "net.prototxt") -> None:
    """``folder/prototxt`` (``NET``) and the sources it reads, from a fixed seed."""
    rng = np.random.RandomState(0)
    save_npz_source(folder / "train.npz", rng.randn(12, 2, 6, 6).astype("f4"),
                    rng.randint(0, 3, 12))
    save_npz_source(folder / "test.npz", rng.randn(10, 2, 6, 6).astype("f4"),
                    rng.randint(0, 3, 10))
    (folder / prototxt).write_text(NET)
