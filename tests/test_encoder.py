import pytest
import torch

from arl_fast.encoder import SamePadConv, TSEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def small_encoder(**kwargs):
    torch.manual_seed(0)
    return TSEncoder(3, output_dims=5, hidden_dims=4, depth=2, **kwargs).eval()


@pytest.mark.parametrize("kernel_size, dilation", [(3, 1), (3, 4), (2, 1), (4, 2), (1, 1)])
def test_same_pad_conv_keeps_length(kernel_size, dilation):
    conv = SamePadConv(2, 3, kernel_size, dilation)
    for length in (1, 5, 16):
        assert conv(torch.randn(2, 2, length)).shape == (2, 3, length)


@pytest.mark.parametrize("length", [1, 2, 7, 64])
def test_output_shape(length):
    out = small_encoder()(torch.randn(2, length, 3))
    assert out.shape == (2, length, 5)


def test_default_architecture_is_ts2vec():
    net = TSEncoder(6)
    assert net.input_fc.out_features == 64
    assert len(net.feature_extractor) == 11  # depth 10 + the final block
    assert net.feature_extractor[-1].conv2.conv.out_channels == 320
    assert [block.conv1.conv.dilation[0] for block in net.feature_extractor] == [2**i for i in range(11)]


def test_masked_timestamps_do_not_influence_output():
    net = small_encoder()
    x = torch.randn(2, 10, 3)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 3] = mask[1, 7] = False
    changed = x.clone()
    changed[0, 3] += 5.0
    changed[1, 7] -= 3.0
    torch.testing.assert_close(net(x, mask), net(changed, mask))
    assert not torch.allclose(net(x), net(changed))


def test_nan_timestamp_is_masked():
    net = small_encoder()
    x = torch.randn(2, 10, 3)
    with_nan = x.clone()
    with_nan[1, 4, 0] = float("nan")  # one channel missing masks the whole timestamp
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 4] = False
    out = net(with_nan)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, net(x, mask))
    assert not torch.isnan(with_nan[1, 4, 1])  # the input is not modified
    assert torch.isnan(with_nan[1, 4, 0])


def test_dropout_follows_generator_in_training_only():
    net = small_encoder()
    x = torch.randn(2, 10, 3)
    net.train()
    a = net(x, generator=torch.Generator().manual_seed(1))
    b = net(x, generator=torch.Generator().manual_seed(1))
    c = net(x, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert (a == 0).float().mean() > 0.02  # about 10% of the outputs are dropped
    net.eval()
    torch.testing.assert_close(net(x, generator=torch.Generator().manual_seed(1)), net(x))


def test_gradients_flow_to_every_parameter():
    net = small_encoder().train()
    net(torch.randn(2, 12, 3)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_dims"):
        TSEncoder(0)
    with pytest.raises(TypeError, match="depth"):
        TSEncoder(3, depth=2.0)
    with pytest.raises(ValueError, match="dropout"):
        TSEncoder(3, dropout=1.0)
    with pytest.raises(ValueError, match=r"\(batch, time, 3\)"):
        small_encoder()(torch.randn(2, 10, 4))


def _output_and_grads(net, forward, target):
    """``forward()``'s output and the parameter gradients of its dot product with ``target``."""
    net.zero_grad()
    out = forward()
    (out * target).sum().backward()
    return out.detach(), [p.grad.clone() for p in net.parameters()]


def _assert_same(ours, expected):
    """Outputs within 1e-12 and parameter gradients within 1e-10 (float64) of ``expected``."""
    torch.testing.assert_close(ours[0], expected[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(ours[1], expected[1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _full_then_slice(net, x, mask, keep, generator_seed):
    return net(x, mask, torch.Generator().manual_seed(generator_seed))[:, keep[0] : keep[1]]


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4])
@pytest.mark.parametrize("keep", [(0, 37), (5, 37), (0, 1), (36, 37), (10, 20)])
def test_kept_outputs_equal_the_full_outputs_there(kernel_size, keep):
    """``keep`` computes the last block only where asked: the same values and parameter gradients (float64) as
    the full forward sliced, in training mode (dropout drawn over every timestamp) and with a mask."""
    torch.manual_seed(0)
    net = TSEncoder(3, output_dims=6, hidden_dims=5, depth=3, kernel_size=kernel_size).double().train()
    x = torch.randn(2, 37, 3, dtype=torch.float64)
    mask = torch.rand(2, 37) < 0.7
    target = torch.randn(2, keep[1] - keep[0], 6, dtype=torch.float64)
    full = _output_and_grads(net, lambda: _full_then_slice(net, x, mask, keep, 3), target)
    kept = _output_and_grads(net, lambda: net(x, mask, torch.Generator().manual_seed(3), keep=keep), target)
    assert kept[0].shape == (2, keep[1] - keep[0], 6)
    _assert_same(kept, full)


def test_kept_outputs_float32_default_encoder():
    """The default architecture (dilations up to 1024, the 1x1 projector) at float32 rounding."""
    torch.manual_seed(0)
    net = TSEncoder(2).eval()
    x = torch.randn(2, 1500, 2)
    torch.testing.assert_close(net(x, keep=(400, 1500)), net(x)[:, 400:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net(x, keep=(0, 900)), net(x)[:, :900], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("keep", [(3, 3), (-1, 4), (0, 11), (5, 2)])
def test_bad_keep_is_refused(keep):
    with pytest.raises(ValueError, match="keep"):
        small_encoder()(torch.randn(2, 10, 3), keep=keep)


def _plain_stack(net, x, keep):
    """The encoder (no mask, no dropout) with its blocks on (B, C, T) tensors of the input's own length: the
    layout the sliding encode uses, without length buckets."""
    h = net.input_fc(x).transpose(1, 2)
    for block in net.feature_extractor:
        h = block(h)
    return h.transpose(1, 2)[:, keep[0] : keep[1]]


@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("bucket", [1, 8, 128])
@pytest.mark.parametrize("keep", [(0, 50), (0, 7), (13, 41), (45, 50)])
def test_bucketed_channels_last_stack_equals_the_plain_stack(kernel_size, bucket, keep):
    """The encoder holds activations as (B, C, 1, T) in channels-last memory, its length padded to a multiple
    of ``length_bucket`` (every convolution reading zeros past the real length); its blocks on (B, C, T) of the
    real length compute the same values and parameter gradients (float64), over all outputs or a kept range."""
    torch.manual_seed(0)
    net = TSEncoder(3, output_dims=6, hidden_dims=5, depth=4, kernel_size=kernel_size).double().eval()
    net.length_bucket = bucket
    x = torch.randn(2, 50, 3, dtype=torch.float64)
    target = torch.randn(2, keep[1] - keep[0], 6, dtype=torch.float64)
    ours = _output_and_grads(net, lambda: net(x, keep=keep), target)
    plain = _output_and_grads(net, lambda: _plain_stack(net, x, keep), target)
    assert ours[0].is_contiguous() and ours[0].shape == plain[0].shape
    _assert_same(ours, plain)


def test_bf16_autocast_follows_float32():
    """Under bf16 autocast the default encoder's representations stay within bf16's precision of float32's."""
    torch.manual_seed(0)
    net = TSEncoder(2).eval()
    x = torch.randn(2, 700, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x, keep=(100, 700))
    assert low.dtype == torch.bfloat16
    exact = net(x)[:, 100:]
    assert (low.float() - exact).abs().max() <= 0.05 * exact.abs().max()
