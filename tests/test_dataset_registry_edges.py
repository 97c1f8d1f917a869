"""The dataset registry (runtime/data/datasets.py): edges a mutation round found untested."""
import pytest

from runtime.data.datasets import get_dataset
from runtime.errors import AllconvError


def test_a_cifar_folder_without_its_files_is_named_with_the_row(tmp_path):
    with pytest.raises(AllconvError, match=r"^row 3: "):
        get_dataset("cifar10").check_files(tmp_path, "row 3")


def test_an_imagefolder_tree_needs_both_split_folders(tmp_path):
    imagenet = get_dataset("imagenet")
    (tmp_path / imagenet.splits[0]).mkdir()
    (tmp_path / imagenet.splits[1]).write_text("not a folder")
    with pytest.raises(AllconvError, match=rf"row 3: .*{imagenet.splits[1]}: no such folder"):
        imagenet.check_files(tmp_path, "row 3")
