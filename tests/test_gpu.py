"""The runtime on CUDA against the CPU Caffe fixtures (tests/fixtures, see test_caffe_fixtures).

fp32 with TF32 off: All-CNN-C forward + backward (batch 2, TEST phase) within 1e-4 of real
Caffe, and the 20 SGD steps of All-CNN-C (batch 8) within 1e-5. Skipped without CUDA.
"""
from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture
def fp32_cuda(no_tf32):
    """The CUDA device, with TF32 off (conftest's no_tf32) while a test runs."""
    return "cuda"


def test_all_c_forward_backward_on_cuda_matches_caffe(fp32_cuda):
    from test_caffe_fixtures import METAS, TOL_NETWORK, check_net_case, run_net_case

    name = "net_all-c"
    if name not in METAS:
        pytest.skip("no All-CNN-C fixture")
    net, meta = run_net_case(name, device=fp32_cuda)
    assert net.device.type == "cuda"
    check_net_case(name, net, meta, tol=TOL_NETWORK, label="CUDA network")


def test_all_c_20_sgd_steps_on_cuda_match_caffe(fp32_cuda):
    from test_caffe_fixtures import METAS, check_solver_case

    name = "solver_all_c_20_steps"
    if name not in METAS:
        pytest.skip("no All-CNN-C solver fixture")
    check_solver_case(name, device=fp32_cuda, label="CUDA ")
