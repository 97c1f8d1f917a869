"""``import_caffe()``: pycaffe under Debian's python3, without its image helpers' packages.

pycaffe's ``caffe.io`` imports ``skimage.io`` and ``scipy.ndimage.zoom`` for image loading and
resizing, which no reference tool uses: where they are not installed, empty modules stand in."""
import importlib
import os
import sys
import types


def import_caffe():
    """Import pycaffe (CPU mode, glog quiet unless GLOG_minloglevel says otherwise)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    for package, module, names in (("skimage", "skimage.io", ()),
                                   ("scipy", "scipy.ndimage", ("zoom",))):
        try:
            importlib.import_module(module)
        except ImportError:
            parent = sys.modules.setdefault(package, types.ModuleType(package))
            child = types.ModuleType(module)
            for name in names:
                setattr(child, name, None)
            setattr(parent, module.split(".")[1], child)
            sys.modules[module] = child
    import caffe
    caffe.set_mode_cpu()
    return caffe


if __name__ == "__main__":      # the shell scripts' probe: exit status 0 when pycaffe imports
    import_caffe()
