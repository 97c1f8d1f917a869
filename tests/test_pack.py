"""Packed runs (runtime/pack.py): K members of one net trained as one Caffe net compute, member
by member, what their solo nets compute (CPU, fp32, eager)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from generator.render import NetOptions, render_net
from generator.variants import get_variant
from harness.net_transforms import data_as_input, transformed
from runtime import TEST, TRAIN
from runtime.caffemodel import read_binary, write_weights
from runtime.errors import AllconvError
from runtime.members import member_block, member_rows, member_state
from runtime.net import Net
from runtime.pack import Member, member_weights, pack_inputs, pack_net, packed_net
from runtime.proto import pb
from runtime.prototxt import read_net

BATCH, SIZE, SEEDS = 8, 16, (3, 11, 5)
# In fp32 grouped convolutions add up in another order than dense ones: rounding only in the
# values. Gradients are compared in fp64 (on a smaller batch, fp64 convolutions being slow): in
# fp32 a class-conv ReLU input of 2e-7 in one net can be 0 in the other, which moves that unit's
# gradient by 1e-2 of the largest gradient (measured at 32x32).
RTOL, ATOL = 1e-5, 1e-6
FP64 = {"rtol": 1e-10, "atol": 1e-12}
SMALL = {"batch": 4, "size": 12}     # the smallest input All-CNN-C takes: 12 -> 6 -> 3 -> 1


def input_net(param, phase, batch, sample_shape):
    """``param`` for ``phase`` with every Data layer an Input layer of ``batch`` samples."""
    return transformed(param, [data_as_input({TRAIN: batch, TEST: batch}, sample_shape)], phase)


def all_cnn_c(phase: int, batch: int = BATCH, size: int = SIZE):
    """All-CNN-C (three Dropout layers) on small inputs, its Data layers as Input layers."""
    text = render_net(get_variant("all-cnn-c"), NetOptions(batch_size=batch,
                                                           test_batch_size=batch))
    return input_net(read_net(text), phase, batch, (3, size, size))


def member_batches(seeds=SEEDS, shape=(3, SIZE, SIZE), classes=10, dtype=torch.float32,
                   batch: int = BATCH):
    g = torch.Generator().manual_seed(7)
    return [{"data": torch.randn(batch, *shape, generator=g, dtype=dtype),
             "label": torch.randint(0, classes, (batch,), generator=g)} for _ in seeds]


def dropouts(net):
    return [l for l in net.layers if hasattr(l, "key_masks")]


def test_pack_net_layout_names_and_shapes():
    param = pack_net(all_cnn_c(TEST), 3)
    net = Net(param, TEST)
    assert net.inputs == ["data", "label_m0", "label_m1", "label_m2"]
    assert net.blobs["data"].shape == (BATCH, 9, SIZE, SIZE)
    assert net.blobs["label_m2"].shape == (BATCH,)
    convs = [l for l in param.layer if l.type == "Convolution"]
    assert [(c.convolution_param.num_output, c.convolution_param.group) for c in convs] == \
        [(288, 3)] * 3 + [(576, 3)] * 5 + [(30, 3)]
    assert [l.name for l in param.layer if l.type in ("Slice", "SoftmaxWithLoss", "Accuracy")] \
        == ["global_pool_members", "loss_m0", "loss_m1", "loss_m2",
            "accuracy_m0", "accuracy_m1", "accuracy_m2"]
    assert net.blobs["global_pool_m1"].shape == (BATCH, 10, 1, 1)
    assert [l.loss_weights for l in net.layers if l.name.startswith("loss_m")] == [[1.0]] * 3
    assert "accuracy_m0" not in [l.name for l in pack_net(all_cnn_c(TRAIN), 3).layer]


def solo_nets(param, phase, seeds=SEEDS, dtype=torch.float32):
    return [Net(param, phase, seed=s).to(dtype) for s in seeds]


def assert_member_gradients(pack, solos, tolerance):
    """Member k's block of every gradient of ``pack`` is ``solos[k]``'s gradient."""
    for k, solo in enumerate(solos):
        for name, blobs in solo.params.items():
            for i, blob in enumerate(blobs):
                got = member_block(pack.params[name][i].diff, k, len(solos))
                scale = float(blob.diff.abs().max())
                torch.testing.assert_close(got, blob.diff, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("keyed", [False, True], ids=["plain-masks", "keyed-masks"])
def test_packed_forward_equals_each_solo(keyed):
    param = all_cnn_c(TRAIN)
    pack, solos, batches = packed_net(param, TRAIN, SEEDS), solo_nets(param, TRAIN), \
        member_batches()
    for iteration in range(2):   # the second pass: generators moved on (or rekeyed) alike
        for layer in [l for net in (pack, *solos) for l in dropouts(net)] if keyed else ():
            layer.key_masks(iteration, BATCH, 3 * BATCH)   # rows 8..16 of a global 24
        with torch.no_grad():
            out = pack.blob_values(**pack_inputs(pack, batches))
            mine = [solo.blob_values(**batch) for solo, batch in zip(solos, batches)]
        for k, solo_out in enumerate(mine):
            # the input dropout's output: the same mask and the same product, bit for bit
            assert torch.equal(out["data"][:, 3 * k:3 * k + 3], solo_out["data"])
            torch.testing.assert_close(out[f"loss_m{k}"], solo_out["loss"], rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(out[f"global_pool_m{k}"], solo_out["global_pool"],
                                       rtol=RTOL, atol=ATOL)


def test_packed_backward_gives_each_solos_gradients():
    param, fp64 = all_cnn_c(TRAIN, **SMALL), torch.float64
    pack, solos = packed_net(param, TRAIN, SEEDS).to(fp64), solo_nets(param, TRAIN, dtype=fp64)
    batches = member_batches(shape=(3, 12, 12), dtype=fp64, batch=4)
    out = pack.blob_values(**pack_inputs(pack, batches))
    sum(out[f"loss_m{k}"] for k in range(3)).backward()   # dropout on: masks drawn per member
    for k, (solo, batch) in enumerate(zip(solos, batches)):
        mine = solo.blob_values(**batch)
        mine["loss"].backward()
        torch.testing.assert_close(out[f"loss_m{k}"], mine["loss"], **FP64)
    assert_member_gradients(pack, solos, 1e-10)


def test_packed_dropout_masks_and_rng_state_are_each_solos():
    param = all_cnn_c(TRAIN)
    pack, solos = packed_net(param, TRAIN, SEEDS), solo_nets(param, TRAIN)
    for packed_layer, *solo_layers in zip(dropouts(pack), *map(dropouts, solos)):
        shape = solo_layers[0].top_shapes[0]
        ones = torch.ones(shape)
        for key in (None, (4, 2, 13), None):
            if key:
                for layer in (packed_layer, *solo_layers):
                    layer.key_masks(*key)
            masks = packed_layer(torch.ones(BATCH, 3 * shape[1], *shape[2:]))[0]
            assert torch.equal(masks, torch.cat([l(ones)[0] for l in solo_layers], 1))
        saved = packed_layer.rng_state(member=1)
        assert torch.equal(saved["cpu"], solo_layers[1].rng_state()["cpu"])
        with pytest.raises(AllconvError, match="per member"):
            packed_layer.rng_state()
        before = solo_layers[1](ones)[0]
        packed_layer.set_rng_state(saved, member=1)   # member 1 alone goes back one draw
        again = packed_layer(torch.ones(BATCH, 3 * shape[1], *shape[2:]))[0]
        assert torch.equal(again[:, shape[1]:2 * shape[1]], before)
        assert torch.equal(again[:, :shape[1]], solo_layers[0](ones)[0])


def test_sgd_steps_per_member_lr_keep_members_equal_to_solo_runs():
    """Plain-torch SGD with momentum and a learning rate per member: each block of the pack
    moves as its solo net does (the real per-member optimizer is the harness's)."""
    param, lrs, momentum = all_cnn_c(TRAIN, **SMALL), (0.05, 0.01, 0.2), 0.9
    pack = packed_net(param, TRAIN, SEEDS).double()
    solos = solo_nets(param, TRAIN, dtype=torch.float64)
    history = [torch.zeros_like(p) for p in pack.learnable_params]
    solo_history = [[torch.zeros_like(p) for p in s.learnable_params] for s in solos]
    for _ in range(2):   # the second step moves by the momentum history too
        batches = member_batches(shape=(3, 12, 12), dtype=torch.float64, batch=4)
        pack.clear_param_diffs()
        pack.loss(**pack_inputs(pack, batches)).backward()
        with torch.no_grad():
            for k, lr in enumerate(lrs):
                blocks = member_state(history, k, 3)
                params = member_state(pack.learnable_params, k, 3)
                grads = member_state([p.grad for p in pack.learnable_params], k, 3)
                for v, p, g in zip(blocks, params, grads):
                    v.mul_(momentum).add_(g, alpha=lr)
                    p.sub_(v)
        for solo, batch, lr, hist in zip(solos, batches, lrs, solo_history):
            solo.clear_param_diffs()
            solo.loss(**batch).backward()
            with torch.no_grad():
                for v, p in zip(hist, solo.learnable_params):
                    v.mul_(momentum).add_(p.grad, alpha=lr)
                    p.sub_(v)
    for packed, *solo_params in zip(pack.learnable_params, *(s.learnable_params for s in solos)):
        torch.testing.assert_close(packed, torch.cat(solo_params), **FP64)
    for packed, *solo_blocks in zip(history, *solo_history):   # members along axis 0
        torch.testing.assert_close(packed, torch.cat(solo_blocks), **FP64)
    for packed, *blocks in zip(history, *(member_state(history, k, 3) for k in range(3))):
        assert torch.equal(torch.cat(blocks), packed)


def test_member_caffemodel_loads_into_its_solo_net(tmp_path):
    param, test_param = all_cnn_c(TRAIN), all_cnn_c(TEST)
    pack = packed_net(param, TRAIN, SEEDS)
    with torch.no_grad():   # weights no solo net drew: trained ones, as far as loading goes
        for p in pack.learnable_params:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    path = tmp_path / "member1.caffemodel"
    write_weights(path, member_weights(pack, 1, 3), net_name=pack.name)
    Net(param, TRAIN, seed=SEEDS[1]).save(tmp_path / "solo.caffemodel")
    files = [read_binary(tmp_path / name, pb.NetParameter)
             for name in ("member1.caffemodel", "solo.caffemodel")]
    for saved in files:                 # a solo run's definitions: the solo net's, as Caffe's
        for layer in saved.layer:
            layer.ClearField("blobs")
    assert files[0] == files[1]
    solo = Net(test_param, TEST, weights=str(path), seed=99)
    test_pack = Net(pack_net(test_param, 3), TEST)
    test_pack.share_trained_layers_with(pack)
    batches = member_batches()
    out = test_pack.blob_values(**pack_inputs(test_pack, batches))
    mine = solo.blob_values(**batches[1])
    torch.testing.assert_close(out["global_pool_m1"], mine["global_pool"], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(out["loss_m1"], mine["loss"], rtol=RTOL, atol=ATOL)
    assert out["accuracy_m1"] == mine["accuracy"]


def test_a_member_loads_a_caffemodel_of_legacy_blob_shapes(tmp_path):
    """As `Net.copy_from`: a blob stored in the legacy num/channels/height/width fields (a bias
    as 1x1x1xN) fills a member's block of that shape; another shape is refused first."""
    from runtime.caffemodel import read_binary, write_binary
    from runtime.proto import pb
    param = all_cnn_c(TRAIN)
    solo, pack = Net(param, TRAIN, seed=SEEDS[0]), packed_net(param, TRAIN, SEEDS[:2])
    path = tmp_path / "legacy.caffemodel"
    solo.save(path)
    stored = read_binary(path, pb.NetParameter)
    for layer in stored.layer:
        for blob in layer.blobs:
            dims = [1] * (4 - len(blob.shape.dim)) + list(blob.shape.dim)
            blob.num, blob.channels, blob.height, blob.width = dims
            blob.ClearField("shape")
    write_binary(path, stored)
    member = Member(pack, None, 1, 2)
    member.copy_from(path)
    for mine, theirs in zip(pack.learnable_params, solo.learnable_params):
        assert torch.equal(member_block(mine, 1, 2), theirs.detach())
    bias = [layer for layer in stored.layer if layer.blobs][-1].blobs[1]
    bias.num, bias.width = bias.width, bias.num       # (10, 1, 1, 1): ten values, not a bias's
    write_binary(path, stored)
    before = [p.detach().clone() for p in pack.learnable_params]
    with pytest.raises(AllconvError, match=r"blob 1: shape \(10, 1, 1, 1\) in the file, "
                                           r"\(10,\) in the net; to learn"):
        member.copy_from(path)
    assert all(torch.equal(a, b) for a, b in zip(before, pack.learnable_params))
    relu = next(layer for layer in stored.layer if layer.type == "ReLU")
    relu.blobs.add().CopyFrom(bias)          # Caffe: "Incompatible number of blobs"; was taken
    write_binary(path, stored)
    with pytest.raises(AllconvError, match=f"layer '{relu.name}' has 1 blob\\(s\\) in the file "
                       "but 0 in the net"):
        member.copy_from(path)


INPUT = ('name: "n" layer { name: "in" type: "Input" top: "data" top: "label" '
         'input_param { shape { dim: 4 dim: 4 dim: 6 dim: 6 } shape { dim: 4 } } }\n')
CONV = ('layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
        'convolution_param {{ num_output: {out} kernel_size: {kernel} pad: {pad} group: {group} '
        'weight_filler {{ type: "gaussian" std: 0.3 }} bias_filler {{ type: "gaussian" }} }} }}\n')
LOSS = ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" '
        'top: "loss" }\n')


def conv(name, bottom, out, kernel=3, pad=1, group=1):
    return CONV.format(name=name, bottom=bottom, out=out, kernel=kernel, pad=pad, group=group)


# Layers that keep the members apart without being Table 3's: grouped convolution, LRN within
# a channel, Eltwise over blobs of the same layout, MAX pooling with padding, an explicit Split.
EXACT = (INPUT + conv("c1", "data", 6, group=2)
         + 'layer { name: "r1" type: "ReLU" bottom: "c1" top: "c1" }\n'
         + 'layer { name: "n1" type: "LRN" bottom: "c1" top: "n1" '
           'lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 alpha: 0.5 } }\n'
         + 'layer { name: "sp" type: "Split" bottom: "n1" top: "a" top: "b" }\n'
         + conv("c2", "a", 6, group=3)
         + 'layer { name: "e" type: "Eltwise" bottom: "c2" bottom: "b" top: "e" '
           'eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }\n'
         + 'layer { name: "p" type: "Pooling" bottom: "e" top: "p" '
           'pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n'
         + conv("score", "p", 5, kernel=1, pad=0)
         + 'layer { name: "gp" type: "Pooling" bottom: "score" top: "g" '
           'pooling_param { pool: AVE global_pooling: true } }\n'
         + LOSS.replace('"score"', '"g"'))


def test_grouped_conv_lrn_within_eltwise_and_split_pack_exactly():
    seeds, fp64 = (1, 2), torch.float64
    pack, solos = packed_net(EXACT, TRAIN, seeds).to(fp64), solo_nets(EXACT, TRAIN, seeds, fp64)
    batches = member_batches(seeds, (4, 6, 6), classes=5, dtype=fp64)
    out = pack.blob_values(**pack_inputs(pack, batches))
    sum(out[f"loss_m{k}"] for k in range(2)).backward()
    for k, (solo, batch) in enumerate(zip(solos, batches)):
        mine = solo.blob_values(**batch)
        mine["loss"].backward()
        torch.testing.assert_close(out[f"g_m{k}"], mine["g"], **FP64)
    assert_member_gradients(pack, solos, 1e-10)


# The input pooled to (4, 4, 1, 1), then the layer under test makes the scores "s".
POOLED = ('layer { name: "gp" type: "Pooling" bottom: "data" top: "d" '
          'pooling_param { pool: AVE global_pooling: true } }\n')
SCORE = LOSS.replace('"score"', '"s"')


@pytest.mark.parametrize("body, refused", [
    ('layer { name: "fc" type: "InnerProduct" bottom: "d" top: "s" '
     'inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }\n',
     "layer 'fc' (InnerProduct)"),
    ('layer { name: "norm" type: "LRN" bottom: "d" top: "s" }\n',
     "layer 'norm' (LRN): ACROSS_CHANNELS"),
    ('layer { name: "cat" type: "Concat" bottom: "d" bottom: "d" top: "s" }\n',
     "layer 'cat' (Concat)"),
    ('layer { name: "sm" type: "Softmax" bottom: "d" top: "s" }\n', "layer 'sm' (Softmax)"),
    ('layer { name: "fl" type: "Flatten" bottom: "d" top: "s" }\n', "layer 'fl' (Flatten)"),
    ('layer { name: "r" type: "ReLU" bottom: "label" top: "lr" }\n'
     'layer { name: "s" type: "ReLU" bottom: "d" top: "s" }\n', "bottom 'label'"),
    ('layer { name: "s" type: "ReLU" bottom: "d" top: "s" }\n'
     'layer { name: "x" type: "Input" top: "label_m1" '
     'input_param { shape { dim: 1 dim: 1 } } }\n',
     "'label_m1'"),
    ('layer { name: "s" type: "ReLU" bottom: "d" top: "s" }\n'     # a label read as scores
     'layer { name: "in2" type: "Input" top: "lab" input_param { shape { dim: 4 dim: 1 } } }\n'
     'layer { name: "a1" type: "Accuracy" bottom: "s" bottom: "lab" top: "a1" }\n'
     'layer { name: "a2" type: "Accuracy" bottom: "lab" bottom: "label" top: "a2" }\n',
     "layer 'a2' (Accuracy): its bottoms must be the packed scores and a label Input top"),
] + [('layer { name: "s" type: "ReLU" bottom: "d" top: "s" }\n'    # a name the pack adds
      f'layer {{ name: "{taken}" type: "ReLU" bottom: "d" top: "{taken}_top" }}\n',
      f"'{taken}'") for taken in ("loss_m1", "s_m0", "s_members")])
def test_layers_that_would_mix_members_are_refused_in_one_line(body, refused):
    Net(INPUT + POOLED + body + SCORE, TRAIN)   # a valid solo net
    with pytest.raises(AllconvError) as err:
        pack_net(INPUT + POOLED + body + SCORE, 2)
    assert refused in str(err.value) and "\n" not in str(err.value)


def test_data_layers_are_refused():
    text = render_net(get_variant("all-cnn-c"), NetOptions())
    with pytest.raises(AllconvError, match=r"layer 'data' \(Data\).*Input"):
        pack_net(text, 2)


def test_inputs_of_another_pack_size_are_refused():
    pack = Net(pack_net(EXACT, 2), TRAIN)
    for seeds in ((1, 2, 3), (1,)):                  # more members, and fewer
        with pytest.raises(AllconvError, match="inputs of .* members for a pack of another size"):
            pack_inputs(pack, member_batches(seeds, (4, 6, 6)))


def test_a_pack_of_one_is_its_solo_net_and_none_is_refused():
    one = Net(pack_net(EXACT, 1), TRAIN)
    assert one.inputs == ["data", "label_m0"] and one.blobs["c2"].shape == (4, 6, 6, 6)
    with pytest.raises(AllconvError, match="a pack needs at least one member, got 0"):
        pack_net(EXACT, 0)
    for k in (-1, 1):
        with pytest.raises(AllconvError, match=f"no member {k} of 1"):
            Member(one, None, k, 1)


def test_a_2d_input_packs_on_its_channel_axis():
    """(N, C) scores straight from the input: the members' C columns side by side."""
    text = ('layer { name: "in" type: "Input" top: "score" top: "label" '
            'input_param { shape { dim: 4 dim: 5 } shape { dim: 4 } } }\n' + LOSS)
    pack = Net(pack_net(text, 2), TRAIN)
    assert pack.blobs["score"].shape == (4, 10)
    batches = member_batches((1, 2), (5,), classes=5, batch=4)
    batches = [{"score": b["data"], "label": b["label"]} for b in batches]
    out = pack.blob_values(**pack_inputs(pack, batches))
    for k, batch in enumerate(batches):
        torch.testing.assert_close(out[f"loss_m{k}"], Net(text, TRAIN).blob_values(**batch)["loss"])



TABLE3 = sorted(Path(__file__).parents[1].glob("reproductions/table3/*.toml"))


@pytest.mark.parametrize("row", TABLE3, ids=[p.stem for p in TABLE3])
def test_every_table3_row_packs_and_computes_each_members_scores(row):
    variant = tomllib.loads(row.read_text())["variant"]
    text = render_net(get_variant(variant), NetOptions(batch_size=2, test_batch_size=2))
    param = input_net(read_net(text), TEST, 2, (3, 32, 32))
    pack, solos = packed_net(param, TEST, (0, 1)), solo_nets(param, TEST, (0, 1))
    batches = member_batches((0, 1), (3, 32, 32))
    out = pack.blob_values(**pack_inputs(pack, batches))
    scores = next(l.bottom[0] for l in param.layer if l.type == "SoftmaxWithLoss")
    for k, (solo, batch) in enumerate(zip(solos, batches)):
        mine = solo.blob_values(**batch)
        torch.testing.assert_close(out[f"{scores}_m{k}"], mine[scores], rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(out[f"loss_m{k}"], mine["loss"], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("old, new, refused", [
    ("group: 3", "group: 3 bias_term: false",        # fewer blobs: was an IndexError guard
     r"layer 'c2' blob 1: member 0's blob None is not a block of the pack's \(12,\)"),
    ("kernel_size: 3 pad: 1 group: 2", "kernel_size: 1 pad: 0 group: 2",    # another shape
     r"layer 'c1' blob 0: member 0's blob \(6, 2, 1, 1\) is not a block of the pack's "
     r"\(12, 2, 3, 3\)")])
def test_solo_nets_without_a_blob_the_pack_has_are_refused_in_one_line(old, new, refused):
    from runtime.pack import pack_weights
    pack = packed_net(EXACT, TRAIN, (1, 2))
    assert old in EXACT
    solos = solo_nets(EXACT.replace(old, new), TRAIN, (1, 2))
    with pytest.raises(AllconvError, match=refused):
        pack_weights(pack, solos)


def test_member_blocks_split_axis_0_evenly_or_are_refused():
    """Member k of K holds rows [k·n, (k+1)·n); a blob whose rows do not split, a k past the
    members and values that do not split the rows are refused, not read as another member's."""
    blob = torch.arange(12.0).reshape(6, 2)
    assert member_block(blob, 2, 3).tolist() == [[8, 9], [10, 11]]
    for k, members in ((3, 3), (-1, 3), (0, 4)):
        with pytest.raises(AllconvError, match=f"no member {k} of {members} in a blob of "
                                               r"shape \(6, 2\)"):
            member_block(blob, k, members)
    assert member_rows(torch.tensor([1.0, 2.0, 3.0]), blob).flatten().tolist() \
        == [1, 1, 2, 2, 3, 3]
    with pytest.raises(AllconvError, match=r"4 member values do not split a blob of shape"):
        member_rows(torch.ones(4), blob)


def test_a_loss_on_the_channel_axis_given_from_the_end_packs():
    """softmax_param { axis: -3 } on 4-d scores is the channel axis."""
    param = all_cnn_c(TRAIN, **SMALL)
    loss = next(l for l in param.layer if l.type == "SoftmaxWithLoss")
    loss.softmax_param.axis = -3
    pack_net(param, 2)


def test_a_packed_net_is_of_the_phase_asked_for_whatever_its_param_says():
    """packed_net(param, TRAIN, ...) keeps the TRAIN-only layers of a param whose
    state says TEST (as Net(param, TRAIN) does for each solo net)."""
    text = ("layer { name: 'in' type: 'Input' top: 'data' top: 'label' input_param { "
            "shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 } } }\n"
            "layer { name: 'c' type: 'Convolution' bottom: 'data' top: 'c' convolution_param { "
            "num_output: 10 kernel_size: 4 weight_filler { type: 'gaussian' } } }\n"
            "layer { name: 'drop' type: 'Dropout' bottom: 'c' top: 'c' include { phase: TRAIN } }\n"
            "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'c' bottom: 'label' "
            "top: 'loss' }\n")
    net = packed_net(text, TRAIN, (1, 2))
    assert "drop" in net.layer_names


def test_a_clip_of_0_leaves_a_member_without_gradient_finite():
    """clip_gradients 0 (Caffe scales only a norm above it): a member whose
    gradient is 0 keeps it, not 0/0."""
    from runtime.optim.sgd import CaffeSGD
    w = torch.nn.Parameter(torch.ones(2, 2))
    opt = CaffeSGD([w], lr=torch.tensor([0.1, 0.1]), momentum=0.0, clip_gradients=0.0)
    w.grad = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    opt.step()
    assert torch.isfinite(w).all()
