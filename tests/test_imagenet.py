"""runtime.data.imagenet / jpeg / runtime.topk on a tiny ImageFolder of JPEGs the test writes."""
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from generator.render import NetOptions, render_net
from generator.variants import get_variant
from runtime import Net, TEST, TRAIN
from runtime.caffemodel import array_to_blob, read_blob, write_binary
from runtime.data import imagenet, jpeg
from runtime.data.imagenet import CROP, RESIZE, ImageNetFeed, mean_image, scan
from runtime.data.transform import crop_mirror
from runtime.errors import AllconvError
from runtime.proto import pb
from runtime.topk import topk_errors

WNIDS = ("n01440764", "n01443537", "n01484850")
COLOURS = ((220, 30, 30), (30, 200, 40), (20, 40, 210))      # RGB per class


def _write_tree(root, per_class=3, val_per_class=1, sizes=((300, 200), (180, 260), (256, 256))):
    """root/{train,val}/<wnid>/*.JPEG: flat colours per class plus a white square, odd sizes."""
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label, (wnid, rgb) in enumerate(zip(WNIDS, COLOURS)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                w, h = sizes[i % len(sizes)]
                pixels = np.empty((h, w, 3), np.uint8)
                pixels[:] = rgb
                pixels[: h // 4, : w // 4] = 255
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=95)
    return root


@pytest.fixture
def tree(tmp_path):
    return _write_tree(tmp_path / "imagenet")


def test_scan_labels_folders_in_sorted_wnid_order(tree):
    train = scan(tree, "train")
    assert train.classes == WNIDS and len(train) == 9
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    val = scan(tree, "val", train.classes)
    assert val.labels.tolist() == [0, 1, 2]


def test_scan_errors_name_the_folder(tree, tmp_path):
    with pytest.raises(AllconvError, match="valid splits: train, val"):
        scan(tree, "test")
    with pytest.raises(AllconvError, match=r"nowhere/train: no such folder"):
        scan(tmp_path / "nowhere", "train")
    (tree / "val" / "n99999999").mkdir()
    with pytest.raises(AllconvError, match="n99999999 are not among the training split's 3"):
        scan(tree, "val", WNIDS)
    (tmp_path / "empty" / "train" / "n1").mkdir(parents=True)
    with pytest.raises(AllconvError, match="no .JPEG files"):
        scan(tmp_path / "empty", "train")


def test_decode_and_resize_give_caffes_bgr_256_square(tree):
    folder = scan(tree, "train")
    with ThreadPoolExecutor(2) as pool:
        images = imagenet.load_batch(folder, torch.tensor([0, 3]), "cpu", pool)
        short = imagenet.load_batch(folder, torch.tensor([0]), "cpu", pool, "short-side")
    assert images.shape == (2, 3, RESIZE, RESIZE) and images.dtype == torch.uint8
    assert short.shape == (1, 3, RESIZE, RESIZE)
    red, green = images[0, :, 200, 200].tolist(), images[1, :, 200, 200].tolist()  # BGR
    assert red[2] > 200 and red[0] < 50 and green[1] > 180 and green[2] < 60
    # "square" squeezes the 300x200 image's white quarter into the top-left 64x64
    assert images[0, :, 60, 60].min() > 240 and images[0, :, 70, 70].max() < 240
    with pytest.raises(AllconvError, match="valid modes: square, short-side"):
        jpeg.resize(images[0], mode="crop")


def test_a_png_named_jpeg_is_decoded_and_a_corrupt_jpeg_names_its_path(tree):
    png = tree / "train" / WNIDS[1] / "disguised.JPEG"
    Image.new("RGB", (300, 300), (10, 20, 30)).save(png, format="PNG")
    folder = scan(tree, "train")
    with ThreadPoolExecutor(1) as pool:
        image = imagenet.load_batch(folder, torch.tensor([folder.paths.index(png)]), "cpu", pool)
    assert image[0, :, 5, 5].tolist() == [30, 20, 10]                     # BGR
    bad = tree / "train" / WNIDS[0] / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    folder = scan(tree, "train")
    index = torch.tensor([folder.paths.index(bad)])
    with ThreadPoolExecutor(1) as pool, pytest.raises(AllconvError, match="broken.JPEG"):
        imagenet.load_batch(folder, index, "cpu", pool)
    bad.unlink()                            # gone since the scan: files.read_bytes' words
    with ThreadPoolExecutor(1) as pool, pytest.raises(AllconvError,
                                                      match=r"broken.JPEG: no such file$"):
        imagenet.load_batch(folder, index, "cpu", pool)
    bad.mkdir()
    with ThreadPoolExecutor(1) as pool, pytest.raises(
            AllconvError, match=r"broken.JPEG: is a directory, expected a JPEG file$"):
        imagenet.load_batch(folder, index, "cpu", pool)


def test_crop_mirror_is_an_exact_slice_and_its_mirror():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    offsets = torch.tensor([[1, 2], [0, 3]])
    out = crop_mirror(images, offsets, torch.tensor([False, True]), crop=5)
    torch.testing.assert_close(out[0], images[0, :, 1:6, 2:7])
    torch.testing.assert_close(out[1], images[1, :, 0:5, 3:8].flip(-1))


def test_train_crops_cover_the_range_and_mirror_half():
    offsets, flips = imagenet.draw_crops(4000, RESIZE, True, torch.Generator().manual_seed(0))
    assert offsets.min() == 0 and offsets.max() == RESIZE - CROP
    assert flips.float().mean() == pytest.approx(0.5, abs=0.03)
    centre, none = imagenet.draw_crops(3, RESIZE, False, None)
    assert centre.tolist() == [[14, 14]] * 3 and not none.any()   # (256 - 227) // 2


def test_mean_image_is_the_training_mean_and_is_cached_as_binaryproto(tree, tmp_path,
                                                                      monkeypatch):
    folder = scan(tree, "train")
    mean = mean_image(folder, batch_size=4, threads=2, cache=tmp_path / "cache")
    with ThreadPoolExecutor(2) as pool:
        every = imagenet.load_batch(folder, torch.arange(len(folder)), "cpu", pool)
    torch.testing.assert_close(mean, every.double().mean(0).float())
    cached, = (tmp_path / "cache").glob("imagenet-mean-*.binaryproto")
    blob = read_blob(cached)
    assert blob.shape == (1, 3, RESIZE, RESIZE)
    monkeypatch.setattr(imagenet, "load_batch", lambda *a, **k: pytest.fail("not cached"))
    torch.testing.assert_close(mean_image(folder, cache=tmp_path / "cache"), mean)
    write_binary(cached, array_to_blob(np.zeros((2, 2), np.float32)))
    with pytest.raises(AllconvError, match=r"imagenet-mean-.*shape \(2, 2\).*delete it"):
        mean_image(folder, cache=tmp_path / "cache")
    cached.write_bytes(pb.BlobProto(num=1, channels=3, height=4, width=4, data=[0.0] * 5)
                       .SerializeToString())
    with pytest.raises(AllconvError,
                       match=rf"^{re.escape(str(cached))}: blob shape \(1, 3, 4, 4\) needs 48"):
        mean_image(folder, cache=tmp_path / "cache")
    cached.write_bytes(b"\x08garbage")
    with pytest.raises(AllconvError, match="imagenet-mean-.*binaryproto"):
        mean_image(folder, cache=tmp_path / "cache")


def test_test_feed_is_mean_subtracted_centre_crops_in_file_order(tree):
    val = scan(tree, "val", WNIDS)
    feed = ImageNetFeed(val, train=False, mean=torch.tensor([104.0, 117.0, 123.0]), threads=2)
    data, labels = feed(2)
    assert data.shape == (2, 3, CROP, CROP) and labels.tolist() == [0.0, 1.0]
    with ThreadPoolExecutor(1) as pool:
        stored = imagenet.load_batch(val, torch.tensor([0, 1]), "cpu", pool).float()
    want = stored[:, :, 14:14 + CROP, 14:14 + CROP] - torch.tensor([104.0, 117, 123])[:, None, None]
    torch.testing.assert_close(data, want)
    assert feed(2)[1].tolist() == [2.0, 0.0]                     # wraps around, like Caffe


def test_train_feed_resumes_with_the_same_batches(tree):
    folder = scan(tree, "train")
    mean = torch.zeros(3, RESIZE, RESIZE)
    feed = ImageNetFeed(folder, train=True, mean=mean, seed=3, threads=2)
    feed(4)
    state = feed.state_dict()
    first = feed(7)                                              # crosses into a new pass
    again = ImageNetFeed(folder, train=True, mean=mean, seed=99, threads=2)
    again.load_state_dict(state)
    second = again(7)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    with pytest.raises(AllconvError, match="mean must be 3 channel values"):
        ImageNetFeed(folder, train=True, mean=torch.zeros(4))


def test_topk_errors_give_ties_to_the_higher_class_index_as_caffe_does():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.5], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    labels = torch.tensor([0, 1, 0, 2])
    # image 1 ties with class 2 (the higher index ranks first), image 2's label is third
    assert topk_errors(scores, labels, ks=(1, 2, 3)) == {1: 50.0, 2: 25.0, 3: 0.0}
    assert topk_errors(scores, torch.tensor([0, 2, 2, 2]), ks=(1,)) == {1: 0.0}


@pytest.mark.filterwarnings("ignore:.*transform_param is not applied")
def test_imagenet_net_trains_a_few_iterations_on_the_folder(tree):
    """The generated ImageNet net fed by the loader: two SGD-free forward/backward passes at
    TRAIN, then top-1 and top-5 of the TEST net on the val split."""
    train, val = scan(tree, "train"), scan(tree, "val", WNIDS)
    mean = mean_image(train, threads=2, cache=tree / "cache")
    variant = get_variant("imagenet")
    text = render_net(variant, NetOptions(batch_size=2, test_batch_size=3))
    feed = ImageNetFeed(train, train=True, mean=mean, seed=0, threads=2)
    net = Net(text, TRAIN, seed=0, feeds=feed)
    losses = [net.forward_backward() for _ in range(2)]
    assert all(np.isfinite(losses)) and net.params["conv1"][0].diff.abs().sum() > 0
    test_net = Net(text, TEST, seed=0, feeds=ImageNetFeed(val, train=False, mean=mean, threads=2))
    out = test_net.forward()
    scores = test_net.blobs["global_pool"].data.reshape(3, -1)
    errors = topk_errors(scores, test_net.blobs["label"].data)
    assert set(errors) == {1, 5} and 0 <= errors[5] <= errors[1] <= 100
    assert float(out["accuracy"]) == pytest.approx(1 - errors[1] / 100)


class _BrokenTorchvision:
    """A meta path finder that fails like PyPI's CUDA torchvision beside torch's CPU build."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


def test_a_torchvision_that_does_not_load_falls_back_to_pillow(tree, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BrokenTorchvision()] + sys.meta_path)
    jpeg.torchvision_io.cache_clear()
    try:
        with pytest.warns(UserWarning, match="torchvision does not load .*nms.*Pillow"):
            assert jpeg.decoder_name("cuda") == "pillow"
        folder = scan(tree, "val", WNIDS)
        with ThreadPoolExecutor(1) as pool:
            assert imagenet.load_batch(folder, torch.tensor([2]), "cpu", pool).shape == \
                (1, 3, RESIZE, RESIZE)
    finally:
        jpeg.torchvision_io.cache_clear()


def test_pillow_refuses_a_16_bit_image_it_would_clip(tmp_path):
    """A 16-bit PNG among the .JPEG files: Pillow's RGB conversion clipped it to 255."""
    path = tmp_path / "deep.JPEG"
    Image.fromarray(np.full((4, 5), 40000, np.uint16)).save(path, format="PNG")
    with pytest.raises(AllconvError, match=f"^{path}: an image of mode I;16 .*; the ImageNet "
                                           "loader reads 8-bit images$"):
        jpeg._pillow(path.read_bytes(), path)


@pytest.mark.skipif(jpeg.torchvision_io() is None, reason="torchvision does not load here")
def test_torchvision_and_pillow_decode_alike(tree):
    path = scan(tree, "train").paths[0]
    data = path.read_bytes()
    ours = jpeg._torchvision_one(data, path).int()
    pillow = jpeg._pillow(data, path).int()
    assert (ours - pillow).abs().max() <= 2
    png = tree / "disguised.JPEG"                     # a PNG named .JPEG, as in ILSVRC-2012
    Image.new("RGB", (5, 4), (10, 20, 30)).save(png, format="PNG")
    assert jpeg._torchvision_one(png.read_bytes(), png)[:, 0, 0].tolist() == [10, 20, 30]
