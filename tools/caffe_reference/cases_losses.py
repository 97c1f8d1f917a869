"""Fixture cases for the loss layers (issue 17): EuclideanLoss, SigmoidCrossEntropyLoss,
HingeLoss, InfogainLoss, MultinomialLogisticLoss, ContrastiveLoss. Collected by
make_fixtures.py's ``layer_cases``.

The reference build is older than BVLC master in two loss layers, so only the behaviour they
share is recorded: its SigmoidCrossEntropyLoss has no ignore_label and no normalization
(always BATCH_SIZE, master's default); its InfogainLoss takes probabilities and divides by N,
so the case runs it on a Softmax's output, and ``runtime_prototxt`` is the same
computation in master's terms (InfogainLoss on the scores, normalization BATCH_SIZE, the
probabilities as its second top), which the runtime runs instead; the reference net's diff
of the probabilities has no counterpart there (``no_diff``). Under force_backward Caffe
would back-propagate to H (a third bottom is not a label to LossLayer) and abort, so these
nets learn an InnerProduct instead."""
from __future__ import annotations

from case_kit import L, labels, net_case, net_text, normal, uniform


def loss_case(name, group, inputs, layers, runtime_layers=None, no_diff=()):
    forced = runtime_layers is None
    case = net_case(name, group, inputs, layers, backward="loss", force_backward=forced)
    if runtime_layers is not None:
        case.update(runtime_prototxt=net_text(name, inputs, runtime_layers, forced),
                    no_diff=list(no_diff))
    return case


def cases():
    c = []
    add = lambda name, group, inputs, body, bottoms=("data", "label"), **kw: c.append(  # noqa
        loss_case(name, group, inputs, [L("loss", group, list(bottoms), "loss", body)], **kw))
    add("euclidean", "EuclideanLoss", {"a": normal(4, 3, 2, 2), "b": normal(4, 12)},
        "loss_weight: 2", bottoms=("a", "b"))
    add("sigmoid_ce_soft_targets", "SigmoidCrossEntropyLoss",
        {"data": normal(4, 5, scale=3.0), "label": uniform(4, 5, low=0.0, high=1.0)}, "")
    add("sigmoid_ce_binary_spatial", "SigmoidCrossEntropyLoss",
        {"data": normal(2, 3, 2, 2, scale=2.0), "label": labels(2, 3, 2, 2, classes=2)},
        "loss_weight: 0.5")
    add("hinge_l1", "HingeLoss", {"data": normal(5, 4, scale=1.5), "label": labels(5, classes=4)},
        "")
    add("hinge_l2_4d", "HingeLoss",
        {"data": normal(3, 4, 1, 2, scale=1.5), "label": labels(3, classes=8)},
        "hinge_loss_param { norm: L2 }")
    # nothing needs the scores' diff: Caffe's Forward leaves the margins there
    for name, shape, body in (("l1", (5, 4), ""),
                              ("l2_4d", (3, 4, 1, 2), "hinge_loss_param { norm: L2 }")):
        c.append(net_case(f"hinge_scratch_{name}", "HingeLoss",
                          {"data": normal(*shape, scale=1.5), "label": labels(shape[0], classes=4)},
                          [L("loss", "HingeLoss", ["data", "label"], "loss", body)],
                          backward="loss", force_backward=False))
    # loss_weight 0 with force_backward: Backward runs all the same and scales by the top
    # diff, 0, over the margins Forward left
    c.append(net_case("hinge_weight0_forced", "HingeLoss",
                      {"data": normal(5, 4, scale=1.5), "label": labels(5, classes=4)},
                      [L("loss", "HingeLoss", ["data", "label"], "loss", "loss_weight: 0")],
                      backward="loss", force_backward=True))
    for name, data, weight in (("mll", uniform(5, 4, low=0.01, high=1.0), ""),
                               ("mll_clamped_zeros", {"shape": [6, 3], "kind": "ties",
                                                      "low": 0, "high": 1}, "loss_weight: 3")):
        add(name, "MultinomialLogisticLoss",
            {"data": data, "label": labels(data["shape"][0], 1, 1, 1, classes=data["shape"][1])},
            weight)
    c.append(loss_case(
        "mll_after_softmax", "MultinomialLogisticLoss",
        {"data": normal(4, 5, scale=2.0), "label": labels(4, classes=5)},
        [L("softmax", "Softmax", "data", "prob"),
         L("loss", "MultinomialLogisticLoss", ["prob", "label"], "loss")]))
    for name, n, classes, weight in (("infogain_h_bottom", 5, 4, ""),
                                     ("infogain_h_bottom_weighted", 3, 6, "loss_weight: 2\n")):
        inputs = {"data": normal(n, 5), "label": labels(n, classes=classes),
                  "H": uniform(1, 1, classes, classes, low=0.0, high=2.0)}
        ip = L("ip", "InnerProduct", "data", "scores",
               f"inner_product_param {{ num_output: {classes} }}")
        c.append(loss_case(
            name, "InfogainLoss", inputs,
            [ip, L("softmax", "Softmax", "scores", "prob"),
             L("loss", "InfogainLoss", ["prob", "label", "H"], "loss", weight)],
            runtime_layers=[ip, L("loss", "InfogainLoss", ["scores", "label", "H"],
                                  ["loss", "prob"], (weight or "loss_weight: 1\n")
                                  + "loss_weight: 0 loss_param { normalization: BATCH_SIZE }")],
            no_diff=["prob"]))
    pair = {"a": normal(6, 3, 1, 1, scale=0.6), "b": normal(6, 3, 1, 1, scale=0.6),
            "y": labels(6, 1, 1, 1, classes=2)}
    for name, body in (("contrastive", ""), ("contrastive_legacy",
                                              "contrastive_loss_param { legacy_version: true }"),
                       ("contrastive_margin2", "contrastive_loss_param { margin: 2 }")):
        add(name, "ContrastiveLoss", pair, body, bottoms=("a", "b", "y"))
    # loss layers without a top: Caffe gives each an anonymous "(automatic)" top; both count
    scores = L("ip", "InnerProduct", "data", "scores", "inner_product_param { num_output: 4 }")
    c.append(loss_case(
        "losses_without_tops", "SoftmaxWithLoss",
        {"data": normal(5, 6), "label": labels(5, classes=4), "target": normal(5, 4)},
        [scores, L("softmax_loss", "SoftmaxWithLoss", ["scores", "label"]),
         L("euclidean", "EuclideanLoss", ["scores", "target"], (), "loss_weight: 0.5")]))
    return c
