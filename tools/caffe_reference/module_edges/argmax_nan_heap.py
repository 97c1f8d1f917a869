"""Real Caffe's ArgMax top_k on rows mixing NaN and numbers (libstdc++'s partial_sort heap
order): prints [row, k, indices] for each."""
import tempfile
import numpy as np
from pycaffe_import import import_caffe
caffe = import_caffe()
nan = float("nan")
ROWS = [[5, 1, 3, nan, 2, 4],
        [nan, 2, 7, 1, nan, 3, 9, 0],
        [0.5, nan, 0.5, 2, nan, -1, 2, 8, 3],
        [1, 2, nan, 3, 4, 5, 6, 7]]
for row in ROWS:
    for k in (2, 3, 4, 5):
        if k > len(row):
            continue
        text = (f'input: "s" input_shape {{ dim: 1 dim: {len(row)} }}\n'
                f'layer {{ name: "am" type: "ArgMax" bottom: "s" top: "i" '
                f'argmax_param {{ top_k: {k} }} }}\n')
        with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
            f.write(text)
        net = caffe.Net(f.name, caffe.TEST)
        net.blobs["s"].data[...] = np.array(row, np.float32)
        out = net.forward()["i"].ravel().astype(int).tolist()
        print([None if v != v else v for v in row], k, out)
