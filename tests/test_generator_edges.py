"""From a mutation round: what tests/test_generator.py left open. Tables 5 and 6 layer
by layer (convs, dropout after each, the LeakyReLU slope), the ImageNet Data layers' transform,
the registry's tables and notes, the open choices' exact values and the solver's corners.
Expected values come from ../shared/paper/facts.md and README.md ("Open choices", "ImageNet"),
written out here rather than read from generator/variants.py."""
import pytest

from generator import cli
from generator.render import NetOptions, SolverOptions, render_net, render_solver
from generator.variants import VARIANTS, get_variant
from runtime.limits import INT_MAX
from runtime.proto import pb
from runtime.prototxt import parse_net, parse_solver
import warnings
from runtime.meta import count_params, meta_net

# Table 5 (facts.md): (num_output, kernel, stride, dropout after it or None); all unpadded
TABLE5 = [(320, 2, 1, None), (320, 2, 1, None), (320, 2, 2, None),
          (640, 2, 1, 0.1), (640, 2, 1, 0.1), (640, 2, 2, None),
          (960, 2, 1, 0.2), (960, 2, 1, 0.2), (960, 2, 2, None),
          (1280, 2, 1, 0.3), (1280, 2, 1, 0.3), (1280, 2, 2, None),
          (1600, 2, 1, 0.4), (1600, 2, 1, 0.4), (1600, 2, 2, None),
          (1920, 2, 1, 0.5), (1920, 1, 1, 0.5)]
# Table 6 (facts.md): (num_output, kernel, stride, dropout after it or None)
TABLE6 = [(96, 11, 4, None), (96, 1, 1, None), (96, 3, 2, None),
          (256, 5, 1, None), (256, 1, 1, None), (256, 3, 2, None),
          (384, 3, 1, None), (384, 1, 1, None), (384, 3, 2, 0.5),
          (1024, 3, 1, None), (1024, 1, 1, None), (1000, 1, 1, None)]


def _net(name, **opts):
    return parse_net(render_net(get_variant(name), NetOptions(**opts)))


def _convs(net):
    """[(name, num_output, kernel, stride, pad, ReLU slope or None (no ReLU), dropout or None)]
    per Convolution, from the layers reading its top in place."""
    relus = {l.bottom[0]: l.relu_param.negative_slope for l in net.layer if l.type == "ReLU"}
    drops = {l.bottom[0]: l.dropout_param.dropout_ratio for l in net.layer if l.type == "Dropout"}
    out = []
    for l in net.layer:
        if l.type == "Convolution":
            c = l.convolution_param
            out.append((l.name, c.num_output, c.kernel_size[0], c.stride[0] if c.stride else 1,
                        c.pad[0] if c.pad else 0, relus.get(l.name), drops.get(l.name)))
    return out


def _approx(value):
    return None if value is None else pytest.approx(value)


def test_large_all_cnn_is_table5_conv_by_conv_with_its_dropout():
    convs = _convs(_net("large-all-cnn"))
    assert len(convs) == 18
    for n, ((width, kernel, stride, drop), conv) in enumerate(zip(TABLE5, convs), 1):
        assert conv[:5] == (f"conv{n}", width, kernel, stride, 0), conv
        assert conv[6] == _approx(drop), conv
    # README, Open choices: every LeakyReLU has slope 0.333; the classifier has none
    assert all(c[5] == pytest.approx(0.333) for c in convs[:17])
    assert convs[17] == ("classifier", 10, 1, 1, 0, None, None)
    net = _net("large-all-cnn")
    assert not [l for l in net.layer if l.type == "Pooling"]      # no global averaging
    assert [l.bottom[0] for l in net.layer if l.type == "SoftmaxWithLoss"] == ["classifier"]


def test_imagenet_is_table6_conv_by_conv_with_dropout_after_conv9_only():
    net = _net("imagenet")
    convs = _convs(net)
    assert len(convs) == 12
    for n, ((width, kernel, stride, drop), conv) in enumerate(zip(TABLE6, convs), 1):
        assert conv[:4] == (f"conv{n}", width, kernel, stride), conv
        assert conv[5] == 0 and conv[6] == _approx(drop), conv      # plain ReLU everywhere
    assert [l.name for l in net.layer if l.type == "Dropout"] == ["drop9"]
    pool = next(l for l in net.layer if l.type == "Pooling")
    assert pool.pooling_param.pool == pb.PoolingParameter.AVE and pool.pooling_param.global_pooling


def test_imagenet_data_layers_crop_and_mirror_at_train_only_with_bgr_means():
    """README, ImageNet: mean values 104, 117, 123 (Caffe's BGR order); a random 227x227 crop
    and a mirror at TRAIN, the centre crop at TEST."""
    data = {l.include[0].phase: l.transform_param for l in _net("imagenet").layer
            if l.type == "Data"}
    for phase, mirror in ((pb.TRAIN, True), (pb.TEST, False)):
        t = data[phase]
        assert (t.mirror, t.crop_size, list(t.mean_value)) == (mirror, 227, [104, 117, 123])
    cifar = [l for l in _net("all-c").layer if l.type == "Data"]
    assert not any(l.HasField("transform_param") for l in cifar)     # pre-whitened


def test_imagenet_solver_tests_the_50000_validation_images_once():
    variant = get_variant("imagenet")
    solver = parse_solver(render_solver(variant, NetOptions(), SolverOptions(net_path="n")))
    test = next(l for l in _net("imagenet").layer if l.type == "Data"
                and l.include[0].phase == pb.TEST)
    assert solver.test_iter[0] * test.data_param.batch_size == 50_000
    assert (solver.test_iter[0], test.data_param.batch_size) == (1000, 50)
    # the registry's intervals for Table 6's 450,000 iterations
    assert (solver.test_interval, solver.snapshot) == (10_000, 50_000)


def test_the_tables_and_notes_of_the_cifar_families():
    """README: Model A/B/C are Table 1, the derived variants Table 2; only the Strided-CNN
    variants say where their dropout went."""
    for name, variant in VARIANTS.items():
        if variant.is_cifar:
            assert variant.table == ("Table 1" if name.startswith("model") else "Table 2"), name
    for base in "abc":
        assert "# Table 1 of" not in render_net(get_variant(f"all-{base}"))
        assert render_net(get_variant(f"model-{base}")).startswith(f"# Model {base.upper()} "
                                                                  "(Table 1 of")
        assert "Strided-CNN: the 50 % dropout follows" in render_net(
            get_variant(f"strided-{base}"))
        for family in ("model", "convpool", "all"):
            assert "dropout follows" not in render_net(get_variant(f"{family}-{base}"))


def test_the_open_choices_exact_values():
    """README, Open choices: xavier at FAN_IN; a gaussian's std 0.01 by default; multipliers
    printed as integers (lr_mult: 2, not 2.0)."""
    text = render_net(get_variant("all-c"))
    assert 'weight_filler { type: "xavier" variance_norm: FAN_IN }' in text
    assert "param { lr_mult: 1 decay_mult: 1 }\n  param { lr_mult: 2 decay_mult: 0 }" in text
    assert 'bias_filler { type: "constant" value: 0 }' in text
    from generator.render import Init, weight_filler
    gaussian = render_net(get_variant("all-c"), NetOptions(init=Init(
        weight_filler=weight_filler("gaussian"))))
    assert 'weight_filler { type: "gaussian" std: 0.01 }' in gaussian


def test_each_phase_reads_its_own_default_source():
    data = {l.include[0].phase: l.data_param.source for l in _net("all-c", num_classes=100).layer
            if l.type == "Data"}
    assert data == {pb.TRAIN: "data/cifar100_gcn_zca_train.npz",
                    pb.TEST: "data/cifar100_gcn_zca_test.npz"}
    data = {l.include[0].phase: l.data_param.source for l in _net("imagenet").layer
            if l.type == "Data"}
    assert data == {pb.TRAIN: "data/ilsvrc12_train_lmdb", pb.TEST: "data/ilsvrc12_val_lmdb"}


def test_an_epoch_solvers_intervals_are_at_least_one_iteration():
    """A test interval of 0 would switch Caffe's testing off (solver.cpp tests where
    test_interval is non-zero)."""
    solver = parse_solver(render_solver(get_variant("all-c"), NetOptions(), SolverOptions(
        net_path="n", test_every_epochs=0.0001, snapshot_every_epochs=0.0001)))
    assert (solver.test_interval, solver.snapshot) == (1, 1)


def test_a_run_of_exactly_int32_max_iterations_is_written():
    """Caffe's int32 max_iter holds 2,147,483,647: that many is not refused, one more is."""
    variant = get_variant("all-c")
    opts = SolverOptions(net_path="n", epochs=INT_MAX, step_epochs=(1,), train_size=1)
    solver = parse_solver(render_solver(variant, NetOptions(batch_size=1), opts))
    assert solver.max_iter == INT_MAX
    from runtime.errors import AllconvError
    with pytest.raises(AllconvError, match="more than Caffe's int32 field holds"):
        render_solver(variant, NetOptions(batch_size=1), SolverOptions(
            net_path="n", epochs=INT_MAX + 1.0, step_epochs=(1,), train_size=1))


def test_a_seed_of_0_is_written_as_random_seed_0(tmp_path, capsys):
    """--seed 0 is a seed (0..4294967295), not "no seed": Caffe seeds from the clock without
    random_seed."""
    text = render_solver(get_variant("all-c"), NetOptions(), SolverOptions(net_path="n", seed=0))
    assert parse_solver(text).HasField("random_seed") and parse_solver(text).random_seed == 0
    assert not parse_solver(render_solver(get_variant("all-c"), NetOptions(), SolverOptions(
        net_path="n"))).HasField("random_seed")


def test_whole_numbers_given_as_options_are_written_as_integers(capsys):
    """The options parse as floats; the text says lr_mult: 1, not 1.0 (render._plain_number)."""
    from runtime.cli_support import run_cli
    code = run_cli(cli.main, "gen-prototxt", ["--variant", "all-c", "--bias-lr-mult", "1",
                                              "--bias-decay-mult", "1", "--bias-value", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "param { lr_mult: 2 decay_mult: 0 }" not in out
    assert "param { lr_mult: 1 decay_mult: 1 }\n  param { lr_mult: 1 decay_mult: 1 }" in out
    assert 'bias_filler { type: "constant" value: 0 }' in out and ".0 " not in out


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if n != "large-all-cnn"])
def test_every_global_pool_averages(name):
    """facts.md: global averaging over 6x6 (Tables 1-2, 6); a MAX global pool has the same
    shapes and parameter counts, so only the pooling method tells them apart."""
    pools = [l for l in _net(name).layer if l.type == "Pooling" and l.pooling_param.global_pooling]
    assert [p.pooling_param.pool for p in pools] == [pb.PoolingParameter.AVE]


def test_data_layers_say_lmdb_and_the_text_has_no_runs_of_blank_lines():
    """README: "The Data layers say backend: LMDB"."""
    for name, variant in VARIANTS.items():
        text = render_net(variant)
        assert "\n\n\n" not in text, name
        backends = {l.data_param.backend for l in parse_net(text).layer if l.type == "Data"}
        assert backends == {pb.DataParameter.LMDB}, name


def test_relu_layers_are_named_after_their_conv():
    net = _net("all-c")
    relus = [(l.name, l.bottom[0]) for l in net.layer if l.type == "ReLU"]
    assert relus == [(f"relu{n}", f"conv{n}") for n in range(1, 10)]


def test_the_solver_averages_the_loss_over_its_display_interval():
    solver = parse_solver(render_solver(get_variant("all-c"), NetOptions(),
                                        SolverOptions(net_path="n")))
    assert (solver.display, solver.average_loss) == (100, 100)
    assert (solver.test_initialization, solver.regularization_type, solver.type) == (
        False, "L2", "SGD")
    assert solver.solver_mode == pb.SolverParameter.GPU     # README: "as generated solvers do"


def _gen(args, capsys):
    from runtime.cli_support import run_cli
    code = run_cli(cli.main, "gen-prototxt", args)
    return (code, *capsys.readouterr())


def test_an_lr_step_on_the_last_iteration_is_refused(tmp_path, capsys):
    """A stepvalue equal to max_iter never applies (Caffe stops at max_iter first): refused as
    one past it is."""
    args = ["--variant", "all-c", "-o", str(tmp_path / "n"), "--solver", str(tmp_path / "s"),
            "--epochs", "4", "--steps", "4"]
    code, _, err = _gen(args, capsys)
    assert code == 2 and "stepvalue 1562 is not before max_iter 1562" in err


def test_the_snapshot_prefix_defaults_to_the_variants_name(tmp_path, capsys):
    """--help: "default: the variant's name, in the current directory"."""
    solver = tmp_path / "s"
    for variant, name in (("All-CNN-C", "all-c"), ("ConvPool-CNN-B", "convpool-b")):
        code, _, _ = _gen(["--variant", variant, "-o", str(tmp_path / "n"), "--solver",
                           str(solver)], capsys)
        assert code == 0 and parse_solver(solver.read_text()).snapshot_prefix == name


def test_draws_boxes_say_stride_pad_and_slope_and_fold_only_in_place_layers():
    from generator.draw import _boxes
    from runtime.meta import meta_net
    variant = get_variant("all-c")
    boxes = [label for label, _ in _boxes(meta_net(render_net(variant, NetOptions(deploy=True)),
                                                   pb.TEST))]
    heads = [label.split("\n")[0] for label in boxes]
    assert "conv1  (Convolution, 3x3 pad 1)" in heads
    assert "conv3  (Convolution, 3x3/s2 pad 1)" in heads
    assert "conv7  (Convolution, 3x3)" in heads
    assert "+ ReLU" in boxes[heads.index("conv1  (Convolution, 3x3 pad 1)")]
    large = [label for label, _ in _boxes(meta_net(render_net(
        get_variant("large-all-cnn"), NetOptions(deploy=True)), pb.TEST))]
    assert "+ ReLU slope 0.333" in large[1] and "conv1  (Convolution, 2x2)" in large[1]
    net = meta_net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "out" }
""", pb.TEST)
    assert [kind for _, kind in _boxes(net)] == ["Input", "ReLU"]   # not in place: its own box


def test_a_shared_blob_is_counted_once():
    """count_params: each shared blob once (two InnerProducts sharing "w": 4x3 + 4 + 4)."""
    net = meta_net("""
layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "a" top: "b" param { name: "w" }
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "ip2" type: "InnerProduct" bottom: "a" top: "c" param { name: "w" }
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
""", pb.TEST)
    assert count_params(net) == 12 + 4 + 4


def test_a_meta_net_of_a_data_layer_with_transform_param_says_nothing():
    """meta_net's docstring: the Data layers' transform_param warnings are silenced (nothing
    is fed; gen-prototxt --draw of a TRAIN net printed it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = meta_net("""
layer { name: "data" type: "Data" top: "data" top: "label"
  transform_param { mirror: true crop_size: 24 } data_param { source: "x" batch_size: 2 } }
""", pb.TRAIN, (3, 24, 24))
    assert net.blobs["data"].shape == (2, 3, 24, 24)
