"""The paper's comparison net: "after training, we replace the stride by max-pooling".

Each stride-2 convolution becomes a stride-1 convolution with the same weights, followed by a
MAX pooling layer with stride 2 whose window is chosen so that its top has the strided conv's
shape, so every later blob and layer is unchanged. The pool goes after the conv's in-place
ReLUs, as in the paper's ConvPool nets and Zeiler and Fergus' deconvnet (conv, ReLU, pool): the
forward is the same either way (a ReLU is monotone), the deconvnet and guided rules are not.
Backward through a max-pool sends the signal only to each window's recorded maximum (the first
one on ties, as Caffe): the switches.

The pool tried first is the 3×3 stride-2 pooling of the paper's ConvPool models, unpadded; it
keeps the shape of the padded CIFAR nets (32 → 16 with Caffe's rounding up). It is one short
wherever the strided conv is unpadded, as in the ImageNet net (conv3: 55 → 27 strided, but
stride 1 gives 53 and a 3×3 pool 53 → 26); there pad 1 gives 27, and centres each window on the
position the strided conv sampled. One of the two always fits: pad 0 where the stride-1 map's
size is even, pad 1 where it is odd.
"""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.geometry import conv_output_size, pool_output_size
from runtime.proto import pb

POOL_CANDIDATES = ((3, 0), (3, 1))   # (kernel, pad), tried in order, stride 2


def _pool_for(layer, bottom_shape, top_shape) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel_h, kernel_w), (pad_h, pad_w) of the pool that keeps the strided conv's top."""
    kernels, pads = [], []
    for size, want, k, p, d in zip(bottom_shape[2:], top_shape[2:], layer.kernel, layer.pad,
                                   layer.dilation):
        full = conv_output_size(size, k, p, 1, d)
        fit = next(((pk, pp) for pk, pp in POOL_CANDIDATES
                    if pool_output_size(full, pk, pp, 2) == want), None)
        if fit is None:
            raise AllconvError(f"layer {layer.name!r}: no max-pool of {POOL_CANDIDATES} (kernel, "
                               f"pad) with stride 2 takes {full} to {want}")
        kernels.append(fit[0])
        pads.append(fit[1])
    return tuple(kernels), tuple(pads)


def _is_stride_two(layer) -> bool:
    return layer.type_name == "Convolution" and tuple(layer.stride) == (2, 2)


def _acts_in_place_on(layer, pool) -> bool:
    """Whether ``layer`` is a ReLU in place on the blob that the waiting ``pool`` will write."""
    return pool is not None and layer.type_name == "ReLU" and \
        list(layer.bottoms) == list(layer.tops) == list(pool.top)


def switches_param(net) -> tuple[object, list[str]]:
    """The NetParameter of ``net`` with its stride-2 convs replaced, and one note per change."""
    param, notes, pool = pb.NetParameter(name=f"{net.name}-switches"), [], None
    for layer in net.layers:
        if _acts_in_place_on(layer, pool):      # the ReLU on the stride-1 map, before the pool
            relu = param.layer.add()
            relu.CopyFrom(layer.param)
            relu.bottom[:] = relu.top[:] = list(pool.bottom)
            continue
        if pool is not None:
            param.layer.add().CopyFrom(pool)
            pool = None
        if not _is_stride_two(layer):
            param.layer.add().CopyFrom(layer.param)
            continue
        bottom, top = net.blobs[layer.bottoms[0]].shape, net.blobs[layer.tops[0]].shape
        (kh, kw), (ph, pw) = _pool_for(layer, bottom, top)
        conv = param.layer.add()
        conv.CopyFrom(layer.param)
        conv_param = conv.convolution_param
        conv_param.ClearField("stride_h")
        conv_param.ClearField("stride_w")
        del conv_param.stride[:]
        conv_param.stride.append(1)
        del conv.top[:]
        conv.top.append(f"{layer.tops[0]}_stride1")
        pool = pb.LayerParameter(name=f"{layer.name}_switches", type="Pooling",
                                 bottom=list(conv.top), top=[layer.tops[0]])
        pool.pooling_param.pool = pb.PoolingParameter.MAX
        pool.pooling_param.kernel_h, pool.pooling_param.kernel_w = kh, kw
        pool.pooling_param.pad_h, pool.pooling_param.pad_w = ph, pw
        pool.pooling_param.stride = 2
        full = conv_output_size(bottom[2], layer.kernel[0], layer.pad[0], 1, layer.dilation[0])
        notes.append(f"{layer.name}: stride 1 + max-pool {kh}x{kw} s2 pad {ph} "
                     f"({full}->{top[2]})")
    if pool is not None:
        param.layer.add().CopyFrom(pool)
    return param, notes


def switched_net(net):
    """``(net with switches, notes)``: the same phase and weights, on the same device."""
    from runtime.net import net_for_weights
    param, notes = switches_param(net)
    if not notes:
        raise AllconvError(f"net {net.name!r} has no stride-2 convolution to replace")
    switched = net_for_weights(param, net.phase)
    with torch.no_grad():
        for layer in switched.layers:
            for mine, trained in zip(layer.blobs, net.params.get(layer.name, [])):
                mine.copy_(trained.data)
    return switched.to(net.device), notes
