"""harness/datasets.py's data sharing and ImageFolder labels (a mutation round: rows of one
dataset sharing loaded data whatever their whitening, and val/ labelled by its own folders,
passed every other test)."""
import numpy as np
import torch
from PIL import Image

from harness.datasets import data_key, load_data
from harness.specs import SPECS_DIR, load_spec

WNIDS = tuple(f"n{i:08d}" for i in range(1000))


def test_rows_of_one_dataset_share_loaded_data_only_with_the_same_whitening():
    """replicate loads a row's data once per data_key: Large All-CNN's raw uint8 CIFAR-10 and
    the whitened CIFAR-10 of ALL-CNN-C (augmented) must not be one entry."""
    large = load_spec(SPECS_DIR / "table4" / "large-all-cnn.toml")
    whitened = load_spec(SPECS_DIR / "table4" / "all-cnn-c-augmented.toml")
    assert large.dataset.name == whitened.dataset.name
    assert data_key(large) != data_key(whitened)
    assert data_key(whitened) == data_key(load_spec(SPECS_DIR / "table3" / "all-cnn-c.toml"))


def _jpeg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(path)


def test_val_images_take_the_training_splits_class_indices(tmp_path):
    """A val/ tree missing a class folder still labels its images by the training split's
    classes (the first class absent from val/: the fourth class is label 3, not 2)."""
    for i, wnid in enumerate(WNIDS):
        (tmp_path / "train" / wnid).mkdir(parents=True)
        if i < 8:
            _jpeg(tmp_path / "train" / wnid / f"{i}.JPEG")
    for wnid in WNIDS[1:]:
        (tmp_path / "val" / wnid).mkdir(parents=True)
    _jpeg(tmp_path / "val" / WNIDS[3] / "v.JPEG")
    folders = load_data(load_spec(SPECS_DIR / "table6" / "imagenet.toml"), str(tmp_path), True,
                        torch.device("cpu"))
    assert folders.val.labels.tolist() == [3]
