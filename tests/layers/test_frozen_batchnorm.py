import torch
from torch import nn

from uniref.layers.frozen_batchnorm import FrozenBatchNorm2d


def _random_stats(bn: FrozenBatchNorm2d, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    c = bn.num_features
    bn.weight.copy_(torch.randn(c, generator=g))
    bn.bias.copy_(torch.randn(c, generator=g))
    bn.running_mean.copy_(torch.randn(c, generator=g))
    bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)


def test_all_four_tensors_are_persistent_buffers():
    bn = FrozenBatchNorm2d(6)
    assert list(bn.parameters()) == []
    assert set(dict(bn.named_buffers())) == {"weight", "bias", "running_mean", "running_var"}
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert bn.eps == 1e-5


def test_fresh_layer_is_identity():
    x = torch.randn(2, 6, 5, 4)
    torch.testing.assert_close(FrozenBatchNorm2d(6)(x), x, rtol=0, atol=1e-6)


def test_matches_eval_batchnorm_with_and_without_grad():
    frozen = FrozenBatchNorm2d(6)
    _random_stats(frozen)
    ref = nn.BatchNorm2d(6).eval()
    ref.load_state_dict({**frozen.state_dict(), "num_batches_tracked": torch.tensor(0)})
    x = torch.randn(2, 6, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), ref(x), rtol=0, atol=0)
    xg = x.clone().requires_grad_(True)
    y = frozen(xg)
    torch.testing.assert_close(y, ref(x), rtol=1e-6, atol=1e-6)
    y.sum().backward()
    scale = frozen.weight * (frozen.running_var + frozen.eps).rsqrt()
    torch.testing.assert_close(xg.grad, scale.view(1, -1, 1, 1).expand_as(x))


def test_loads_a_batchnorm_state_dict_with_counter():
    bn = nn.BatchNorm2d(3)
    sd = bn.state_dict()
    assert "num_batches_tracked" in sd
    frozen = FrozenBatchNorm2d(3)
    frozen.load_state_dict(sd, strict=True)
    torch.testing.assert_close(frozen.running_var, sd["running_var"])
