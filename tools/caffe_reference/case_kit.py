"""What every fixture case module builds its cases with: prototxt text helpers (layer blocks,
Input layers, nets), seeded input specs (tests/fixture_format.py makes them) and the `net` case.

Imported by make_fixtures.py and by the case modules it collects (cases_*.py), so that none of
those imports make_fixtures.py back.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
import fixture_format as ff  # noqa: E402

# The whole-network forward/backward cases keep fewer samples per large array (their sums and
# sums of squares still cover every element) so that tests/fixtures stays a few MB.
NET_SAMPLE_SIZE = 1024


# ============================================================================ prototxt helpers

def _list(x):
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def L(name, type_, bottoms=(), tops=(), body=""):
    """One ``layer { }`` block; ``body`` is the layer's parameter text."""
    b = "".join(f'  bottom: "{x}"\n' for x in _list(bottoms))
    t = "".join(f'  top: "{x}"\n' for x in _list(tops))
    body = textwrap.dedent(body).strip()
    body = textwrap.indent(body, "  ") + "\n" if body else ""
    return f'layer {{\n  name: "{name}"\n  type: "{type_}"\n{b}{t}{body}}}\n'


def input_layer(inputs: dict) -> str:
    tops = list(inputs)
    shapes = " ".join("shape { " + " ".join(f"dim: {d}" for d in inputs[n]["shape"]) + " }"
                      for n in tops)
    return L("input", "Input", (), tops, f"input_param {{ {shapes} }}")


def net_text(name, inputs, layers, force_backward=True) -> str:
    head = f'name: "{name}"\n' + ("force_backward: true\n" if force_backward else "")
    return head + input_layer(inputs) + "".join(layers)


def conv(name, bottom, top, body, filler=""):
    return L(name, "Convolution", bottom, top, f"convolution_param {{ {body} {filler} }}")


def pool(name, bottom, top, body):
    return L(name, "Pooling", bottom, top, f"pooling_param {{ {body} }}")


def normal(*shape, scale=1.0):
    return {"shape": list(shape), "kind": "normal", "scale": scale}


def ties(*shape, low=-2, high=2):
    return {"shape": list(shape), "kind": "ties", "low": low, "high": high}


def uniform(*shape, low, high):
    return {"shape": list(shape), "kind": "uniform", "low": low, "high": high}


def labels(*shape, classes, **kw):
    return dict({"shape": list(shape), "kind": "labels", "classes": classes}, **kw)


def net_case(name, group, inputs, layers, backward="top_diff", top_diffs=None,
             weight_mode="msra", force_backward=None, note="", params_after_forward=False):
    if force_backward is None:
        force_backward = backward != "none"
    return {
        "kind": "net", "name": name, "group": group, "scale": "layer",
        "prototxt": net_text(name, inputs, layers, force_backward),
        "inputs": inputs, "weight_mode": weight_mode, "backward": backward,
        "top_diffs": top_diffs, "sample_size": ff.SAMPLE_SIZE, "note": note,
        **({"params_after_forward": True} if params_after_forward else {}),
    }
