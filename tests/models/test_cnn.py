"""The plain CNNs' max-pool: the channels-last computation of a no-grad pass gives nn.MaxPool2d's output."""

import pytest
import torch
import torch.nn.functional as F

from lt_noise.models.cnn import MaxPool2x2, cnn4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 8, 28, 28), (3, 5, 15, 9), (2, 1, 6, 6)])
def test_no_grad_pool_equals_the_nchw_kernel_with_ties_and_odd_sizes(shape, dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).relu().to(dtype)  # ReLU zeros: many tied windows
    x[0, 0, :2, :2] = float("nan")
    with torch.no_grad():
        out = MaxPool2x2()(x)
    expected = F.max_pool2d(x, kernel_size=2, stride=2)
    assert out.dtype == dtype and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)


def test_grad_pass_and_the_network_match_nn_maxpool():
    torch.manual_seed(0)
    net = cnn4()
    reference = cnn4()
    reference.load_state_dict(net.state_dict())
    reference.features = torch.nn.Sequential(
        *[torch.nn.MaxPool2d(2, 2) if isinstance(m, MaxPool2x2) else m for m in reference.features]
    )
    x = torch.randn(16, 1, 28, 28)
    net(x).square().sum().backward()
    reference(x).square().sum().backward()
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    net.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=0, atol=0)
