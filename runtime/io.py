"""pycaffe's ``caffe.io`` on numpy arrays: the ``Transformer`` that makes images a net's
input (and back), the BlobProto and Datum conversions, ``load_image``, ``resize_image`` and
``oversample``. Arrays in and out are numpy's, as pycaffe's; a net's blobs are tensors
(``torch.from_numpy`` puts an array in, ``.numpy()`` takes one out)."""
from __future__ import annotations

import numpy as np

from runtime.proto import pb

# skimage's rgb2gray weights, which pycaffe's grey load_image reads with
GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def blobproto_to_array(blob: "pb.BlobProto", return_diff: bool = False) -> np.ndarray:
    """A BlobProto's data (or diff) as a float64 array of its shape: its legacy num, channels,
    height and width where any of them is given (they win, as in Caffe's Blob::FromProto),
    else ``shape`` (no dims: a 0-d array)."""
    values = blob.diff if return_diff else blob.data
    legacy = ("num", "channels", "height", "width")
    shape = (tuple(getattr(blob, name) for name in legacy)
             if any(blob.HasField(name) for name in legacy) else tuple(blob.shape.dim))
    return np.array(values, dtype=np.float64).reshape(shape)


def array_to_blobproto(arr: np.ndarray, diff: np.ndarray | None = None) -> "pb.BlobProto":
    """A BlobProto of ``arr``'s shape and values (and ``diff``'s, of the same shape)."""
    arr = np.asarray(arr)
    blob = pb.BlobProto()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.astype(float).ravel())
    if diff is not None:
        blob.diff.extend(np.asarray(diff).astype(float).ravel())
    return blob


def arraylist_to_blobprotovector_str(arraylist) -> bytes:
    """A serialized BlobProtoVector of the arrays."""
    vector = pb.BlobProtoVector()
    vector.blobs.extend(array_to_blobproto(arr) for arr in arraylist)
    return vector.SerializeToString()


def blobprotovector_str_to_arraylist(text: bytes) -> list[np.ndarray]:
    """The arrays of a serialized BlobProtoVector."""
    vector = pb.BlobProtoVector()
    vector.ParseFromString(text)
    return [blobproto_to_array(blob) for blob in vector.blobs]


def array_to_datum(arr: np.ndarray, label: int | None = None) -> "pb.Datum":
    """A Datum of a (channels, height, width) array: uint8 in its bytes, other types as
    ``float_data``."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError("Incorrect array shape.")
    datum = pb.Datum(channels=arr.shape[0], height=arr.shape[1], width=arr.shape[2])
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(float).ravel())
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum: "pb.Datum") -> np.ndarray:
    """A Datum's values as a (channels, height, width) array: uint8 from its bytes, else
    float64 from ``float_data``."""
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    return np.array(datum.float_data, dtype=np.float64).reshape(shape)


def load_image(filename, color: bool = True) -> np.ndarray:
    """An 8-bit image file as float32 (height, width, 3) RGB in [0, 1], or with ``color``
    False (height, width, 1) grey; an image with alpha loses it. An image of 16-bit or 32-bit
    values is refused (Pillow would clip it to 8 bits)."""
    from runtime.data.jpeg import pillow_image, rgb_8bit
    with pillow_image(filename, filename) as image:
        rgb = rgb_8bit(image, filename, "load_image") / 255.0
    grey = rgb if color else (rgb @ np.asarray(GREY_WEIGHTS))[:, :, None]
    return grey.astype(np.float32)


def resize_image(im: np.ndarray, new_dims, interp_order: int = 1) -> np.ndarray:
    """``im`` (height, width, K) resized to ``new_dims`` (height, width) as float32:
    interpolation order 0 nearest, 1 bilinear (half-pixel centres; scikit-image's, which
    pycaffe calls, differs at the borders and by version), others refused."""
    import torch
    import torch.nn.functional as F
    if interp_order not in (0, 1):
        raise ValueError(f"interp_order must be 0 (nearest) or 1 (bilinear), not {interp_order}")
    im = np.asarray(im, dtype=np.float32)
    if im.ndim != 3 or not im.size:
        raise ValueError(f"resize_image takes a (height, width, K) image, not one of shape "
                         f"{im.shape}")
    height, width = (int(d) for d in new_dims)
    if height < 1 or width < 1:
        raise ValueError(f"resize_image: new_dims must be positive, not {tuple(new_dims)}")
    planes = torch.from_numpy(np.ascontiguousarray(np.moveaxis(im, -1, 0)))[None]
    if interp_order == 0:
        out = F.interpolate(planes, size=(height, width), mode="nearest-exact")
    else:
        out = F.interpolate(planes, size=(height, width), mode="bilinear", align_corners=False)
    return np.moveaxis(out[0].numpy(), 0, -1)


def oversample(images, crop_dims) -> np.ndarray:
    """Ten crops of each (height, width, K) image, all of one size: the four corners (top
    left, top right, bottom left, bottom right), the centre, then those five mirrored left to
    right; (10 × images, crop height, crop width, K) float32. As pycaffe's, a crop past an
    image's edge is what slicing gives there, broadcast to the crop's size where it can be."""
    images = [np.asarray(im) for im in images]
    crop_h, crop_w = crop_dims
    height, width = images[0].shape[:2]
    starts = [(top, left) for top in (0, height - crop_h) for left in (0, width - crop_w)]
    starts.append((int(height / 2 - crop_h / 2), int(width / 2 - crop_w / 2)))
    crops = np.empty((10 * len(images), crop_h, crop_w, images[0].shape[-1]), np.float32)
    for n, im in enumerate(images):
        for k, (top, left) in enumerate(starts):
            crops[10 * n + k] = im[top:top + crop_h, left:left + crop_w]
        crops[10 * n + 5:10 * n + 10] = crops[10 * n:10 * n + 5, :, ::-1]
    return crops


class Transformer:
    """pycaffe's Transformer: ``preprocess(name, image)`` makes a (height, width, K) image the
    input blob ``name``'s (K, H, W) sample: resized to the blob's H × W, transposed, its
    channels swapped, times the raw scale, less the mean, times the input scale, each as set
    for that blob; ``deprocess`` undoes them but the resize. ``inputs``: {blob: shape}
    (N, K, H, W), as ``{n: net.blobs[n].data.shape for n in net.inputs}``."""

    def __init__(self, inputs: dict):
        self.inputs = {name: tuple(shape) for name, shape in inputs.items()}
        self.transpose, self.channel_swap, self.raw_scale = {}, {}, {}
        self.mean, self.input_scale = {}, {}

    def _check(self, name: str) -> None:
        if name not in self.inputs:
            raise ValueError(f"{name} is not one of the net inputs: {', '.join(self.inputs)}")

    def set_transpose(self, name: str, order) -> None:
        """The order of the image's axes in the blob, e.g. (2, 0, 1) for H × W × K images."""
        self._check(name)
        if len(order) != len(self.inputs[name]) - 1:
            raise ValueError("Transpose order needs to have the same number of dimensions as "
                             "the input.")
        self.transpose[name] = tuple(order)

    def set_channel_swap(self, name: str, order) -> None:
        """The order of the channels after the transpose, e.g. (2, 1, 0) for RGB to BGR."""
        self._check(name)
        if len(order) != self.inputs[name][1]:
            raise ValueError("Channel swap needs to have the same number of dimensions as the "
                             "input channels.")
        self.channel_swap[name] = tuple(order)

    def set_raw_scale(self, name: str, scale: float) -> None:
        """The factor to the raw range, e.g. 255 for load_image's [0, 1] as Caffe's models
        take [0, 255]."""
        self._check(name)
        self.raw_scale[name] = scale

    def set_mean(self, name: str, mean: np.ndarray) -> None:
        """The mean to subtract: one value per channel (K,), or of the sample's (K, H, W)
        shape ((H, W) for one channel)."""
        self._check(name)
        mean = np.asarray(mean)
        if mean.ndim == 1:
            if mean.shape[0] != self.inputs[name][1]:
                raise ValueError("Mean channels incompatible with input.")
            mean = mean[:, None, None]
        else:
            shape = (1,) + mean.shape if mean.ndim == 2 else mean.shape
            if len(shape) != 3:
                raise ValueError("Mean shape invalid")
            if shape != self.inputs[name][1:]:
                raise ValueError("Mean shape incompatible with input shape.")
            mean = mean.reshape(shape)
        self.mean[name] = mean

    def set_input_scale(self, name: str, scale: float) -> None:
        """The factor applied last, after the mean (e.g. a standard deviation's inverse)."""
        self._check(name)
        self.input_scale[name] = scale

    def preprocess(self, name: str, image: np.ndarray) -> np.ndarray:
        """``image`` as blob ``name``'s float32 sample."""
        self._check(name)
        sample = np.array(image, dtype=np.float32)          # a copy: the steps work in place
        size = self.inputs[name][2:]
        if sample.shape[:2] != size:
            if sample.ndim != 3:
                raise ValueError(f"preprocess resizes a (height, width, K) image, not one of "
                                 f"shape {sample.shape}")
            sample = resize_image(sample, size)
        if name in self.transpose:
            sample = sample.transpose(self.transpose[name])
        if name in self.channel_swap:
            sample = sample[list(self.channel_swap[name])]
        return self._steps(name, sample, ((np.multiply, self.raw_scale),
                                          (np.subtract, self.mean),
                                          (np.multiply, self.input_scale)))

    @staticmethod
    def _steps(name: str, sample: np.ndarray, steps) -> np.ndarray:
        """``sample`` through each (ufunc, table) step whose table has a value for ``name``
        (None: not set), in place as pycaffe's: a value that would change the sample's shape
        or type (a complex scale for a float sample) is numpy's error."""
        for step, table in steps:
            if table.get(name) is not None:
                step(sample, table[name], out=sample)
        return sample

    def deprocess(self, name: str, data) -> np.ndarray:
        """Blob ``name``'s sample (a tensor or array, with or without a batch axis of 1)
        back into an image, less the resize; without a transpose, squeezed as pycaffe's.
        With one, the sample keeps the blob's axes, which it transposes back (pycaffe
        squeezes a one-channel sample's channel away, then fails)."""
        self._check(name)
        image = (data.detach().cpu().numpy() if hasattr(data, "detach") else data).copy()
        image = (image.reshape(self.inputs[name][1:]) if name in self.transpose
                 else image.squeeze())
        image = self._steps(name, image, ((np.divide, self.input_scale), (np.add, self.mean),
                                          (np.divide, self.raw_scale)))
        if name in self.channel_swap:
            image = image[np.argsort(self.channel_swap[name])]
        if name in self.transpose:
            image = image.transpose(np.argsort(self.transpose[name]))
        return image
