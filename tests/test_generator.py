"""The generator: every network of the paper as Caffe prototxt, checked from the generated text."""
import re
from dataclasses import replace
from pathlib import Path

import jinja2
import pytest
from google.protobuf import text_format

from generator import cli
from generator.render import NetOptions, SolverOptions, render_net, render_solver
from generator.draw import _boxes, detail
from generator.variants import VARIANTS, get_variant
from runtime.errors import AllconvError
from runtime.meta import count_params, meta_net
from runtime.prototxt import parse_net, parse_solver
from runtime.proto import pb

CIFAR = [v for v in VARIANTS.values() if v.is_cifar]
FACTS = Path(__file__).resolve().parents[2] / "shared" / "paper" / "facts.md"


def _counted_column() -> dict[str, int]:
    """Table 3's 'Params (counted ...)' column of facts.md, keyed by the paper's model name."""
    rows = re.findall(r"^\| ([A-Za-z-]+(?: [ABC])?) \| [\d.]+ \| [^|]+ \| ([\d,]+) \|$",
                      FACTS.read_text(), re.M)
    return {name: int(count.replace(",", "")) for name, count in rows}


def _net(variant, **opts):
    return parse_net(render_net(variant, NetOptions(**opts)), variant.name)


def _meta(variant, phase=pb.TRAIN, **opts):
    """The runtime's net of ``variant`` on the meta device (shapes and counts, no weights)."""
    return meta_net(_net(variant, **opts), phase, variant.data_shape()[1:])


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=list(VARIANTS))
@pytest.mark.parametrize("deploy", [False, True])
def test_every_net_round_trips(variant, deploy):
    net = _net(variant, deploy=deploy)
    again = parse_net(text_format.MessageToString(net))
    assert again == net
    assert len(net.layer) > 10


@pytest.mark.skipif(not FACTS.exists(), reason="../shared/paper/facts.md not present")
@pytest.mark.parametrize("variant", CIFAR, ids=[v.name for v in CIFAR])
def test_parameter_counts_equal_facts_counted_column(variant):
    expected = _counted_column()[variant.title.replace("All-CNN", "ALL-CNN")]
    assert count_params(_meta(variant)) == expected


def test_large_and_imagenet_counts():
    assert count_params(_meta(get_variant("imagenet"))) == 9_372_840   # "< 10 million", ≈9.37 M
    large = _meta(get_variant("large-all-cnn"))
    assert count_params(large) == 77_455_690
    assert all(p.device.type == "meta" for p in large.learnable_params)   # nothing allocated
    assert large.blobs["conv16"].shape == (64, 1920, 1, 1)                # 126 -> 1


@pytest.mark.parametrize("variant", CIFAR, ids=[v.name for v in CIFAR])
def test_cifar_geometry_32_16_8_6_1(variant):
    layers = _meta(variant).layers
    sizes = []
    for layer in layers:
        if layer.type_name in ("Data", "Convolution", "Pooling"):
            size = layer.top_shapes[0][2]
            if not sizes or sizes[-1] != size:
                sizes.append(size)
    assert sizes == [32, 16, 8, 6, 1]
    convs = [l for l in layers if l.type_name == "Convolution"]
    assert convs[-1].top_shapes[0][1] == 10
    assert detail(convs[-3]) == "3x3"            # the head's 3x3 conv is unpadded: 8 -> 6
    pools = [l for l in layers if l.type_name == "Pooling" and l.kernel is not None]
    assert all(detail(l) == "MAX 3x3/s2" for l in pools)


def test_every_conv_is_followed_by_relu_and_dropout_placement():
    net = _net(get_variant("all-c"))
    layers = [(l.type, l.name) for l in net.layer]
    for i, (kind, name) in enumerate(layers):
        if kind == "Convolution":
            assert layers[i + 1][0] == "ReLU", name
    drops = {l.bottom[0]: l.dropout_param.dropout_ratio for l in net.layer if l.type == "Dropout"}
    assert drops == pytest.approx({"data": 0.2, "conv3": 0.5, "conv6": 0.5})
    strided = {l.name: list(l.convolution_param.stride) for l in net.layer if l.type == "Convolution"}
    assert strided["conv3"] == [2] and strided["conv6"] == [2] and strided["conv1"] == [1]


def test_strided_variants_put_dropout_after_the_strided_conv():
    net = _net(get_variant("strided-a"))
    convs = [l for l in net.layer if l.type == "Convolution"]
    assert [list(c.convolution_param.stride) for c in convs[:2]] == [[2], [2]]
    assert [list(c.convolution_param.pad) for c in convs[:2]] == [[2], [2]]
    assert not [l for l in net.layer if l.type == "Pooling" and not l.pooling_param.global_pooling]
    assert [l.bottom[0] for l in net.layer if l.type == "Dropout"] == ["data", "conv1", "conv2"]


def test_open_choices_are_written_out():
    net = _net(get_variant("model-c"))
    for layer in net.layer:
        if layer.type == "Convolution":
            c = layer.convolution_param
            assert c.HasField("weight_filler") and c.weight_filler.type == "xavier"
            assert c.weight_filler.HasField("variance_norm")
            assert c.HasField("bias_filler") and c.bias_filler.HasField("value")
            assert [(p.lr_mult, p.decay_mult) for p in layer.param] == [(1, 1), (2, 0)]
            assert all(p.HasField("lr_mult") and p.HasField("decay_mult") for p in layer.param)
    data = [l for l in net.layer if l.type == "Data"]
    assert [(l.include[0].phase, l.data_param.batch_size) for l in data] == [(pb.TRAIN, 128),
                                                                            (pb.TEST, 100)]


def test_train_and_test_phases_and_deploy_form():
    net = _net(get_variant("all-c"))
    types = [l.type for l in net.layer]
    assert types.count("SoftmaxWithLoss") == 1 and types.count("Accuracy") == 1
    accuracy = next(l for l in net.layer if l.type == "Accuracy")
    assert accuracy.include[0].phase == pb.TEST
    deploy = _net(get_variant("all-c"), deploy=True)
    kinds = [l.type for l in deploy.layer]
    assert kinds[0] == "Input" and kinds[-1] == "Softmax"
    assert "Data" not in kinds and "SoftmaxWithLoss" not in kinds and "Accuracy" not in kinds
    assert list(deploy.layer[0].input_param.shape[0].dim) == [1, 3, 32, 32]


def test_cifar100_changes_only_the_class_conv():
    ten, hundred = _meta(get_variant("all-c")), _meta(get_variant("all-c"), num_classes=100)
    assert count_params(hundred) - count_params(ten) == 90 * 192 + 90
    assert "cifar100" in _net(get_variant("all-c"), num_classes=100).layer[0].data_param.source


@pytest.mark.parametrize("alias", ["All-CNN-C", "all-cnn-c", "all-c", "ALL-CNN-C", "all_cnn_c"])
def test_aliases(alias):
    assert get_variant(alias).name == "all-c"


def test_more_aliases():
    assert get_variant("Model A").name == "model-a"
    assert get_variant("ConvPool-CNN-B").name == "convpool-b"
    assert get_variant("Strided-CNN-C").name == "strided-c"
    assert get_variant("Large-All-CNN").name == "large-all-cnn"


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(AllconvError, match="valid variants: model-a, .*imagenet"):
        get_variant("all-d")


def test_templates_are_strict():
    with pytest.raises(jinja2.UndefinedError):
        jinja2.Environment(undefined=jinja2.StrictUndefined).from_string("{{ nope }}").render()
    from generator import render
    assert render._ENV.undefined is jinja2.StrictUndefined


def test_epochs_of_more_iterations_than_a_float_holds_are_one_line():
    """The API's epochs are not bounded as the command line's float32 options are."""
    with pytest.raises(AllconvError, match="^1e\\+308 epochs are more iterations than a float "
                                           "holds, let alone Caffe's int32 max_iter"):
        render_solver(get_variant("all-c"), NetOptions(batch_size=128),
                      SolverOptions(net_path="net.prototxt", epochs=1e308))


def test_solver_schedule_in_iterations():
    variant = get_variant("all-c")
    solver = parse_solver(render_solver(variant, NetOptions(batch_size=128),
                                        SolverOptions(net_path="net.prototxt", base_lr=0.05)))
    assert (solver.base_lr, solver.momentum, solver.weight_decay) == pytest.approx((0.05, 0.9, 0.001))
    assert solver.lr_policy == "multistep" and solver.gamma == pytest.approx(0.1)
    assert list(solver.stepvalue) == [78125, 97656, 117188]      # epochs 200/250/300 x 390.625
    assert solver.max_iter == 136719                              # 350 epochs
    assert solver.test_iter == [100] and solver.net == "net.prototxt"
    other = parse_solver(render_solver(variant, NetOptions(batch_size=250),
                                       SolverOptions(net_path="n", epochs=10, step_epochs=(5,))))
    assert list(other.stepvalue) == [1000] and other.max_iter == 2000
    assert (solver.test_interval, solver.snapshot) == (1953, 19531)   # every 5 and 50 epochs
    short = parse_solver(render_solver(variant, NetOptions(), SolverOptions(
        net_path="n", epochs=0.02, step_epochs=(0.01,))))
    assert (short.max_iter, short.test_interval, short.snapshot) == (8, 8, 8)   # at its end


def test_imagenet_solver_uses_table6_schedule():
    solver = parse_solver(render_solver(get_variant("imagenet"), NetOptions(),
                                        SolverOptions(net_path="n")))
    assert (solver.lr_policy, solver.stepsize, solver.max_iter) == ("step", 200000, 450000)
    assert solver.weight_decay == pytest.approx(0.0005) and solver.base_lr == pytest.approx(0.01)
    # a shorter run converts epochs as an epoch schedule does: below one iteration is 0 (which
    # the callers refuse), not one iteration; the intervals stay at least 1
    short = parse_solver(render_solver(get_variant("imagenet"), NetOptions(), SolverOptions(
        net_path="n", epochs=0.0001, test_every_epochs=0.0001, train_size=1000)))
    assert (short.max_iter, short.test_interval) == (0, 1)


def test_an_iteration_solvers_comment_gives_what_it_holds():
    """Before: the paper's 450,000 iterations of batch 64 above a shorter run's max_iter."""
    text = render_solver(get_variant("imagenet"), NetOptions(batch_size=32), SolverOptions(
        net_path="n", epochs=0.001, train_size=64_000, base_lr=0.05))
    assert "# Table 6: 2 iterations of batch 32, lr x0.1 every 200,000.\n" in text
    assert "base_lr: 0.05\n" in text and "max_iter: 2\n" in text


def _run(args, capsys):
    from runtime.cli_support import run_cli
    code = run_cli(cli.main, "gen-prototxt", args)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_test_batch_that_does_not_divide_the_test_set_is_said(tmp_path, capsys):
    """Found by a new user: --test-batch-size 7 wrote test_iter 1429 (10,003 images, the first
    3 twice: the Data layer wraps around) without a word; a divisor says nothing."""
    args = ["--variant", "all-c", "-o", str(tmp_path / "n.prototxt"),
            "--solver", str(tmp_path / "s.prototxt")]
    wrote = f"wrote {args[3]}, {args[5]}\n"
    code, _, err = _run(args + ["--test-batch-size", "7"], capsys)
    assert code == 0 and err == (
        "gen-prototxt: warning: the test batch 7 does not divide the 10,000 test images: "
        "test_iter 1429 tests 10,003, the first 3 twice (a divisor, such as 100, tests each "
        "once)\n" + wrote)
    assert "test_iter: 1429\n" in (tmp_path / "s.prototxt").read_text()
    assert _run(args + ["--test-batch-size", "50"], capsys) == (0, "", wrote)


def test_cli_prints_convpool_c(capsys):
    code, out, _ = _run(["--variant", "convpool-c"], capsys)
    assert code == 0
    assert parse_net(out).name == "ConvPool-CNN-C"


def test_cli_deploy_batch(capsys):
    code, out, _ = _run(["--variant", "model-b", "--deploy", "--batch-size", "16"], capsys)
    assert code == 0
    assert list(parse_net(out).layer[0].input_param.shape[0].dim) == [16, 3, 32, 32]


def test_help_gives_the_variants_default_sources(capsys):
    code, out, _ = _run(["--help"], capsys)
    words = " ".join(out.split())
    assert code == 0
    for source in ("data/cifar10_gcn_zca_train.npz, data/cifar100_gcn_zca_train.npz, "
                   "data/cifar10_large_train.npz, data/ilsvrc12_train_lmdb",
                   "data/cifar10_gcn_zca_test.npz, data/cifar100_gcn_zca_test.npz, "
                   "data/cifar10_large_test.npz, data/ilsvrc12_val_lmdb"):
        assert source in words


def test_cli_list(capsys):
    code, out, _ = _run(["--list"], capsys)
    assert code == 0
    assert re.search(r"all-c\s+All-CNN-C\s+Table 2\s+32x32\s+1,369,738", out)
    assert re.search(r"large-all-cnn\s+Large All-CNN\s+Table 5\s+126x126\s+77,455,690", out)
    assert len(out.strip().splitlines()) == 1 + len(VARIANTS)


WITH_SOLVER = ["--variant", "all-c", "-o", "n", "--solver", "s"]


@pytest.mark.parametrize("args, message", [
    (["--variant", "all-q"], "valid variants: model-a"),
    (["--variant", "all-c", "--deploy", "--solver", "s.prototxt"], "--deploy conflicts with --solver"),
    (["--variant", "imagenet", "--classes", "10"], "conflicts with All-CNN ImageNet (Table 6), "
                                                   "which has 1000 classes"),
    (["--variant", "large-all-cnn", "--classes", "100"], "conflicts with Large All-CNN"),
    (["--variant", "all-c", "--classes", "7"], "--classes must be 10 or 100"),
    (["--variant", "all-c", "--classes", "x"], "argument --classes: 'x' is not an integer"),
    # Caffe's batch sizes and random_seed here are unsigned ints: past them, the option is named
    (["--variant", "all-c", "--batch-size", "99999999999"],
     "argument --batch-size: must be at most 4294967295, not 99999999999"),
    (["--variant", "all-c", "--test-batch-size", "0"],
     "argument --test-batch-size: must be positive, not 0"),
    ([*WITH_SOLVER, "--seed", "-5"],
     "argument --seed: must be 0 or more, not -5"),
    ([*WITH_SOLVER, "--seed", "99999999999999999999"],
     "argument --seed: must be at most 4294967295 (Caffe's seed is an unsigned int)"),
    (["--list", "--variant", "all-c"], "--list lists the variants and writes no net: "
                                       "--variant does nothing with it"),
    # before: accepted without a word (but --base-lr, refused as solver-only)
    (["--list", "--classes", "100"], "--classes does nothing with it"),
    (["--list", "--deploy"], "--deploy does nothing with it"),
    (["--list", "--weight-filler", "msra"], "--weight-filler does nothing with it"),
    (["--variant", "all-c", "-o", "n", "--solver", "./n"],
     "--output and --solver are the same file (n): give each its own"),
    # the picture was written, then the net over it (or the solver), with exit status 0
    (["--variant", "all-c", "-o", "y.png", "--draw", "y.png"],
     "--output and --draw are the same file (y.png): give each its own"),
    ([*WITH_SOLVER[:-1], "y.png", "--draw", "y.png"],
     "--solver and --draw are the same file (y.png): give each its own"),
    ([], "--variant is required"),
    (["--variant", "all-c", "-o", "/nonexistent-dir/x.prototxt"], "/nonexistent-dir/x.prototxt"),
    (["--variant", "all-c", "--draw", "net.jpg"], "must end in .png or .svg"),
    ([*WITH_SOLVER, "--epochs", "-1"],
     "argument --epochs: must be positive, not -1"),
    ([*WITH_SOLVER, "--epochs", "0"],
     "argument --epochs: must be positive, not 0"),
    ([*WITH_SOLVER, "--epochs", "1e-4"],
     "the run is less than one iteration (max_iter 0): give more --epochs or a smaller "
     "--batch-size"),
    ([*WITH_SOLVER, "--batch-size", "4294967295"],     # before: "--epochs is less than ..."
     "the run is less than one iteration (max_iter 0)"),
    # found by fuzzing: written, and read by Caffe as infinity (a NaN prob), or 0 (refused)
    ([*WITH_SOLVER, "--base-lr", "1e39"], "argument --base-lr: must be within a 32-bit "
                                         "float's range (±3.4e38, that of Caffe's float fields)"),
    (["--variant", "all-c", "--bias-value=-1e39"], "argument --bias-value: must be within a "
                                                  "32-bit float's range"),
    (["--variant", "all-c", "--weight-filler", "gaussian", "--weight-std", "1e-46"],
     "argument --weight-std: must be at least a 32-bit float's smallest (1.4e-45, that of "
     "Caffe's float fields), not 1e-46"),
    ([*WITH_SOLVER, "--epochs", "1e30"],
     "the solver's max_iter would be 3.91e+32 iterations, "
     "more than Caffe's int32 field holds (2,147,483,647): give fewer epochs"),
    (["--variant", "all-c", "-o", ""],
     "argument -o/--output/--out: an empty value: give one, or leave the option out"),
    ([*WITH_SOLVER, "--snapshot-prefix", " "],
     "argument --snapshot-prefix: an empty value"),
    ([*WITH_SOLVER, "--steps", "400"],
     "an lr step lies beyond the run: stepvalue 156250 is not before max_iter 136719"),
    ([*WITH_SOLVER, "--epochs", "100"], "stepvalue 78125 is not before"),
    ([*WITH_SOLVER, "--steps", "250,200"], "--steps must increase"),
    ([*WITH_SOLVER, "--steps=-5,200"],
     "argument --steps: must be positive, not -5 (in '-5,200')"),
    ([*WITH_SOLVER, "--steps=200,inf"],
     "argument --steps: must be a finite number, not inf (in '200,inf')"),
    ([*WITH_SOLVER, "--steps=200,200"], "argument --steps: 200 is given twice in '200,200'"),
    ([*WITH_SOLVER, "--base-lr", "nan"],
     "argument --base-lr: must be a finite number, not nan"),
    ([*WITH_SOLVER, "--base-lr", "-1"],
     "argument --base-lr: must be positive, not -1"),
    ([*WITH_SOLVER, "--base-lr", "inf"],
     "argument --base-lr: must be a finite number, not inf"),
    ([*WITH_SOLVER, "--epochs", "inf"],
     "argument --epochs: must be a finite number, not inf"),
    (["--variant", "all-c", "--weight-filler", "gaussian", "--weight-std", "0"],
     "argument --weight-std: must be positive, not 0"),
    (["--variant", "all-c", "--bias-value", "nan"],
     "argument --bias-value: must be a finite number, not nan"),
    (["--variant", "all-c", "--bias-lr-mult", "-2"],
     "argument --bias-lr-mult: must be 0 or more, not -2"),
    (["--variant", "all-c", "--bias-decay-mult", "x"],
     "argument --bias-decay-mult: 'x' is not a number"),
    (["--variant", "imagenet", "--solver", "s", "--epochs", "3"], "does nothing for imagenet"),
    (["--variant", "all-c", "--weight-std", "0.5"],
     "--weight-std sets the gaussian filler's std; it does nothing with --weight-filler xavier"),
    (["--variant", "all-c", "--base-lr", "0.1"],
     "--base-lr only affects the solver, and no --solver FILE is written"),
    (["--variant", "all-c", "--seed", "3"], "--seed only affects the solver"),
    (["--variant", "all-c", "--deploy", "--train-source", "x"],
     "--train-source does nothing with --deploy"),
    (["--variant", "all-c", "-o", "s", "--solver", "./s"], "--output and --solver are the same"),
    (["--variant", "all-c", "--solver", "s"], "--solver needs -o: the solver's net: line names"),
    # a later output that cannot be written: the earlier ones are not written either
    (["--variant", "all-c", "-o", "n", "--solver", "/nonexistent-dir/s"],
     "/nonexistent-dir/s: cannot write: no folder /nonexistent-dir"),
    ([*WITH_SOLVER, "--draw", "/nonexistent-dir/x.png"],
     "/nonexistent-dir/x.png: cannot write"),
    ([*WITH_SOLVER, "--draw", "x.jpg"],
     "must end in .png or .svg"),
])
def test_cli_errors_are_one_line_with_status_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(args, capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert out == "" and list(tmp_path.iterdir()) == []      # nothing written on an error


def test_cli_gaussian_std_and_short_runs_with_their_steps(tmp_path, capsys):
    solver, net = tmp_path / "s.prototxt", tmp_path / "n.prototxt"
    code, _, _ = _run(["--variant", "all-c", "--weight-filler", "gaussian", "--weight-std",
                       "0.05", "-o", str(net), "--solver", str(solver), "--epochs", "4",
                       "--steps", "2,3"], capsys)
    assert code == 0 and "std: 0.05" in net.read_text()
    param = parse_solver(solver.read_text())
    assert param.max_iter == 1562 and list(param.stepvalue) == [781, 1172]


def test_paths_are_written_escaped_and_read_back_as_given(tmp_path, capsys):
    """A source or prefix holding a backslash or a quote is escaped in the prototxt text."""
    odd = 'dir\\bname "x".npz'
    solver, net = tmp_path / "s.prototxt", tmp_path / "n.prototxt"
    code, _, _ = _run(["--variant", "all-c", "--train-source", odd, "-o", str(net), "--solver",
                       str(solver), "--snapshot-prefix", "runs\\new"], capsys)
    assert code == 0
    assert parse_net(net.read_text()).layer[0].data_param.source == odd
    assert parse_solver(solver.read_text()).snapshot_prefix == "runs\\new"


def test_draw_names_each_top_of_a_layer_with_several():
    (data, _), (conv1, _) = _boxes(_meta(get_variant("all-c"), pb.TRAIN))[:2]
    assert "-> data 128x3x32x32, label 128\n" in data
    assert "-> 128x96x32x32 " in conv1


def test_cli_draw_alone_prints_no_prototxt(tmp_path, capsys):
    code, out, err = _run(["--variant", "all-c", "--draw", str(tmp_path / "n.svg")], capsys)
    assert code == 0 and out == "" and "wrote" in err


def test_cli_writes_net_solver_and_picture(tmp_path, capsys):
    net, solver = tmp_path / "n.prototxt", tmp_path / "s.prototxt"
    png, svg = tmp_path / "n.png", tmp_path / "n.svg"
    assert _run(["--variant", "All-CNN-C", "--classes", "100", "-o", str(net), "--solver",
                 str(solver), "--base-lr", "0.1", "--batch-size", "64", "--draw", str(png)],
                capsys)[0] == 0
    assert parse_solver(solver.read_text()).net == str(net)
    assert parse_solver(solver.read_text()).base_lr == pytest.approx(0.1)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = parse_net(net.read_text())
    assert loaded.layer[0].data_param.batch_size == 64
    assert _run(["--variant", "model-a", "--deploy", "--draw", str(svg)], capsys)[0] == 0
    assert b"<svg" in svg.read_bytes()[:500]


def test_a_second_variant_of_a_registered_name_is_refused():
    from generator.variants import register
    with pytest.raises(AllconvError, match="variant 'all-c' is already registered"):
        register(VARIANTS["all-c"])
    with pytest.raises(AllconvError, match="variant 'large-all' is already registered "
                                           "\\(a spelling of 'large-all-cnn'\\)"):
        register(replace(VARIANTS["all-c"], name="all-d", aliases=("large-all",)))
    assert len(VARIANTS) == 14 and get_variant("Large All").name == "large-all-cnn"
    with pytest.raises(AllconvError, match="unknown variant 'all-d' \\(did you mean all-c, "
                                           "all-b, all-a\\?\\); valid variants: model-a"):
        get_variant("all-d")
    with pytest.raises(AllconvError, match="unknown variant 'zzz'; valid"):
        get_variant("zzz")


def test_the_output_takes_each_commands_spelling(tmp_path, capsys):
    """-o is --output here and in export-onnx, --out in visualize: a new user's --out or
    --output works in all three (each suggested the other spelling)."""
    from harness.export_onnx import build_parser as export_parser
    from visualize.cli import build_parser as visualize_parser
    path = tmp_path / "n.prototxt"
    assert _run(["--variant", "all-c", "--out", str(path)], capsys)[0] == 0
    assert path.read_text().startswith("# All-CNN-C (Table 2")
    assert export_parser().parse_args(["--run", "r", "--out", "m.onnx"]).output == "m.onnx"
    assert str(visualize_parser().parse_args(
        ["filters", "--run", "r", "--blob", "conv1", "--output", "f.png"]).out) == "f.png"


def test_output_dash_is_stdout(tmp_path, capsys, monkeypatch):
    """Found by a new user: `-o -` wrote a file named '-' ("wrote -")."""
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["--variant", "all-c", "-o", "-"], capsys)
    assert code == 0 and out == _run(["--variant", "all-c"], capsys)[1] and err == ""
    assert not (tmp_path / "-").exists()
    code, out, err = _run(["--variant", "all-c", "-o", "-", "--draw", "n.svg"], capsys)
    assert code == 0 and out.startswith("# All-CNN-C") and err == "wrote n.svg\n"
    code, _, err = _run(["--variant", "all-c", "-o", "-", "--solver", "s.prototxt"], capsys)
    assert code == 2 and "--solver needs -o FILE, not -o - (stdout)" in err
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("args, message", [
    (["--epochs", "1e308", "--steps", "1e307"],
     "argument --epochs: must be within a 32-bit float's range"),
    (["--epochs", "1", "--steps", "0.5000001,0.5000002"],
     "two lr steps fall on one iteration (stepvalue 195)"),
    (["--epochs", "0.0039", "--steps", "0.001"], "an lr step lies before the first iteration"),
    (["--epochs", "１０", "--steps", "1"], "'１０' is not a number"),
])
def test_solver_lengths_python_reads_but_caffe_cannot_are_one_line(args, message, tmp_path,
                                                                    capsys):
    """Found by mutation: a traceback (1e308 epochs), steps rounding onto one iteration or
    onto 0, full-width digits read as a number."""
    code, _, err = _run(["--variant", "all-c", "-o", str(tmp_path / "n.prototxt"), "--solver",
                         str(tmp_path / "s.prototxt"), *args], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
