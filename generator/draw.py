"""Draw a net as a vertical chain of layer boxes (PNG or SVG), like Caffe's draw_net.py."""
from __future__ import annotations

from pathlib import Path

from runtime.errors import AllconvError
from runtime.plotting import pyplot, save_figure
from runtime.proto import pb

COLOURS = {"Convolution": "#f4a582", "Pooling": "#92c5de", "Data": "#d9f0d3", "Input": "#d9f0d3",
           "SoftmaxWithLoss": "#c2a5cf", "Softmax": "#c2a5cf", "Accuracy": "#c2a5cf"}
FOLDED = {"ReLU", "Dropout"}   # in-place layers, written inside the box of the layer they modify


def detail(layer) -> str:
    """What the box says about a layer beside its type: kernel/stride/pad, pool, ratio, slope."""
    if layer.type_name == "Convolution":
        (kh, kw), (sh, _), (ph, _) = layer.kernel, layer.stride, layer.pad
        return f"{kh}x{kw}" + (f"/s{sh}" if sh != 1 else "") + (f" pad {ph}" if ph else "")
    if layer.type_name == "Pooling":
        kind = pb.PoolingParameter.PoolMethod.Name(layer.method)
        if layer.kernel is None:
            return f"global {kind}"
        return f"{kind} {layer.kernel[0]}x{layer.kernel[1]}/s{layer.stride[0]}"
    if layer.type_name == "Dropout":
        return f"{layer.ratio:g}"
    if layer.type_name == "ReLU" and layer.slope:
        return f"slope {layer.slope:g}"
    return ""


def _boxes(net) -> list[tuple[str, str]]:
    """(label, layer type) per box; in-place ReLU/Dropout are folded into the box above."""
    boxes: list[list[str]] = []
    types: list[str] = []
    for layer in net.layers:
        kind, note = layer.type_name, detail(layer)
        if kind in FOLDED and boxes and layer.tops == layer.bottoms:
            boxes[-1].append(f"+ {kind}{' ' + note if note else ''}")
            continue
        shapes = ["x".join(map(str, s)) if s else "scalar" for s in layer.top_shapes]
        if len(shapes) > 1:   # several tops (data and label): name each
            shapes = [f"{name} {shape}" for name, shape in zip(layer.tops, shapes)]
        shape = ", ".join(shapes)
        params = sum(p.numel() for p in layer.blobs)
        head = f"{layer.name}  ({kind}{', ' + note if note else ''})"
        boxes.append([head, f"-> {shape}" + (f"   {params:,} params" if params else "")])
        types.append(kind)
    return [("\n".join(lines), kind) for lines, kind in zip(boxes, types)]


def draw(net, title: str, path: str | Path) -> None:
    """Write the picture of ``net`` (a runtime Net; a meta-device one will do) to ``path``;
    the suffix (.png or .svg) picks the format."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise AllconvError(f"--draw {path}: the picture must end in .png or .svg")
    plt = pyplot()
    boxes = _boxes(net)
    line, gap = 0.17, 0.45           # a text line's height and the arrow between boxes
    halves = [0.5 * line * label.count("\n") + 0.12 for label, _ in boxes]  # to the box edge
    centres, y = [], 0.0
    for i, half in enumerate(halves):
        y -= (halves[i - 1] + gap + half) if i else 0.0
        centres.append(y)
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.8 * (halves[0] - y + halves[-1])))
    ax.set_xlim(0, 1)
    ax.set_ylim(y - halves[-1] - 0.2, halves[0] + 0.2)
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    for i, ((label, kind), centre) in enumerate(zip(boxes, centres)):
        ax.text(0.5, centre, label, ha="center", va="center", fontsize=7, family="monospace",
                bbox=dict(boxstyle="round,pad=0.4", fc=COLOURS.get(kind, "#eeeeee"), ec="#555555"))
        if i:
            ax.annotate("", xy=(0.5, centre + halves[i] + 0.05),
                        xytext=(0.5, centres[i - 1] - halves[i - 1] - 0.05),
                        arrowprops=dict(arrowstyle="->", color="#555555"))
    save_figure(fig, path, bbox_inches="tight", dpi=110)
