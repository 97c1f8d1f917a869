"""Real Caffe on a V1 MEMORY_DATA layer whose own transform_param scales: prints the top."""
import tempfile
import numpy as np
from pycaffe_import import import_caffe
caffe = import_caffe()
TEXT = ('layers { name: "m" type: MEMORY_DATA top: "data" top: "label" '
        'memory_data_param { batch_size: 1 channels: 1 height: 2 width: 2 } '
        'transform_param { scale: 0.5 } }\n')
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(TEXT)
net = caffe.Net(f.name, caffe.TEST)
data = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2)
net.set_input_arrays(data, np.zeros((1, 1, 1, 1), np.float32))
net.forward()
print("V1 MEMORY_DATA transform_param scale 0.5: top", net.blobs["data"].data.ravel().tolist())
