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
