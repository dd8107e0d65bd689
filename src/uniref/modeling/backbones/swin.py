"""Swin Transformer backbone in the layout of the official ``D2SwinTransformer`` (detection variant).

Any input size works: each block pads its map to a multiple of the window, patch embedding pads to a
multiple of the patch size, and patch merging pads odd sizes, exactly as the detection Swin does.
Outputs are ``res2..res5`` (strides 4..32), each through its own LayerNorm ``norm0..norm3``.

Naming: ``B`` batch, ``L = H*W`` tokens, ``C`` channels, ``ws`` window size, ``nW`` windows per image,
``N = ws*ws`` tokens per window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropPath(nn.Module):
    """Stochastic depth: in training, drop the whole residual branch per sample with probability ``p``."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """``fc1`` -> GELU -> ``fc2``."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def window_partition(x: Tensor, ws: int) -> Tensor:
    """``[B, H, W, C]`` (H, W multiples of ``ws``) -> ``[B*nW, ws, ws, C]``."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, c)


def window_reverse(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    """``[B*nW, ws, ws, C]`` -> ``[B, H, W, C]``."""
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def relative_position_index(ws: int, device: torch.device | None = None) -> Tensor:
    """``[N, N]`` int64: index into the ``(2*ws-1)**2`` bias table for each (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws, device=device), torch.arange(ws, device=device),
                                        indexing="ij"))  # [2, ws, ws]
    flat = coords.flatten(1)  # [2, N]
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)  # [N, N, 2], (dy, dx)
    rel = rel + (ws - 1)  # shift to start at 0
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative-position bias.

    Args:
        dim: channels ``C``.
        window_size: ``ws``.
        num_heads: heads; ``C`` must be divisible by it.
        qkv_bias: bias on the fused qkv projection.
        fused_attn: use ``scaled_dot_product_attention`` instead of the explicit softmax (same maths).
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, *, qkv_bias: bool = True,
                 fused_attn: bool = False):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.fused_attn = fused_attn
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=True)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _position_bias(self) -> Tensor:
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous()  # [heads, N, N]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``[B*nW, N, C]``; ``mask``: ``[nW, N, N]`` additive (0 / -100) or None -> ``[B*nW, N, C]``."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B*nW, heads, N, C/heads]
        pos_bias = self._position_bias().unsqueeze(0)  # [1, heads, N, N]
        nw = 1 if mask is None else mask.shape[0]
        if self.fused_attn:
            bias = pos_bias
            if mask is not None:
                bias = (bias.unsqueeze(0) + mask.unsqueeze(1).unsqueeze(0))  # [1, nW, heads, N, N]
                bias = bias.expand(bw // nw, -1, -1, -1, -1).reshape(bw, self.num_heads, n, n)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        else:
            # official order of operations: scale q, add the position bias, then the shift mask
            attn = (q * self.scale) @ k.transpose(-2, -1) + pos_bias
            if mask is not None:
                attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
                attn = attn.view(-1, self.num_heads, n, n)
            out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention + MLP, both pre-norm with residuals and stochastic depth."""

    def __init__(self, dim: int, num_heads: int, *, window_size: int = 7, shift_size: int = 0,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0, fused_attn: bool = False):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError("shift_size must be in [0, window_size)")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias=qkv_bias, fused_attn=fused_attn)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, h: int, w: int, attn_mask: Tensor | None) -> Tensor:
        """``x``: ``[B, H*W, C]``; ``attn_mask``: ``[nW, N, N]`` for the padded map -> ``[B, H*W, C]``."""
        b, length, c = x.shape
        if length != h * w:
            raise ValueError(f"token count {length} does not match the map size {h}x{w}")
        ws, s = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        # pad after the norm, so padded tokens are exact zeros, as in the detection Swin
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        windows = window_partition(x, ws).view(-1, ws * ws, c)
        windows = self.attn(windows, mask=attn_mask if s > 0 else None)
        x = window_reverse(windows.view(-1, ws, ws, c), ws, hp, wp)
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        x = x[:, :h, :w, :].contiguous().view(b, h * w, c)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (``[x00, x10, x01, x11]``) -> LayerNorm(4C) -> Linear(4C, 2C, no bias)."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """``[B, H*W, C]`` -> ``[B, ceil(H/2)*ceil(W/2), 2C]``."""
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


def shifted_window_mask(h: int, w: int, ws: int, shift: int, device: torch.device) -> Tensor:
    """``[nW, N, N]`` additive mask (0 or -100) that stops attention across the seams the cyclic shift creates."""
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    img = torch.zeros((1, hp, wp, 1), device=device)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = window_partition(img, ws).view(-1, ws * ws)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks alternating plain and shifted windows, then optional merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, *, window_size: int, mlp_ratio: float,
                 qkv_bias: bool, drop_path: list[float], downsample: bool, fused_attn: bool = False):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size=window_size,
                                 shift_size=0 if i % 2 == 0 else window_size // 2, mlp_ratio=mlp_ratio,
                                 qkv_bias=qkv_bias, drop_path=drop_path[i], fused_attn=fused_attn)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, h: int, w: int) -> tuple[Tensor, Tensor, int, int]:
        """``[B, H*W, C]`` -> (stage output ``[B, H*W, C]``, next input ``[B, H'*W', C']``, H', W')."""
        attn_mask = None
        if self.shift_size > 0 and len(self.blocks) > 1:
            attn_mask = shifted_window_mask(h, w, self.window_size, self.shift_size, x.device).to(x.dtype)
        for blk in self.blocks:
            x = blk(x, h, w, attn_mask)
        if self.downsample is None:
            return x, x, h, w
        return x, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` conv, then LayerNorm over channels; pads right/bottom to fit."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96, patch_norm: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, C, ceil(H/p), ceil(W/p)]``."""
        _, _, h, w = x.shape
        p = self.patch_size
        if w % p:
            x = F.pad(x, (0, p - w % p))
        if h % p:
            x = F.pad(x, (0, 0, 0, p - h % p))
        x = self.proj(x)
        if self.norm is not None:
            wh, ww = x.shape[2], x.shape[3]
            x = self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).view(-1, x.shape[1], wh, ww)
        return x


@dataclass
class SwinConfig:
    """Architecture of a Swin backbone (``MODEL.SWIN.*``)."""

    embed_dim: int = 96
    depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])
    num_heads: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.2
    patch_size: int = 4
    patch_norm: bool = True


SWIN_PRESETS: dict[str, SwinConfig] = {
    "tiny": SwinConfig(96, [2, 2, 6, 2], [3, 6, 12, 24], 7, drop_path_rate=0.2),
    "small": SwinConfig(96, [2, 2, 18, 2], [3, 6, 12, 24], 7, drop_path_rate=0.2),
    "base": SwinConfig(128, [2, 2, 18, 2], [4, 8, 16, 32], 12, drop_path_rate=0.3),
    # UniRef++ Swin-L: window 12 (the 384-px 22k checkpoint), stochastic depth 0.3
    "large": SwinConfig(192, [2, 2, 18, 2], [6, 12, 24, 48], 12, drop_path_rate=0.3),
}


class SwinTransformer(nn.Module):
    """Swin trunk returning ``{"res2": [B, C, H/4, W/4], ..., "res5": [B, 8C, H/32, W/32]}`` (ceil division).

    Args:
        embed_dim: channels of the first stage ``C``; stage ``i`` has ``C * 2**i``.
        depths, num_heads: blocks and heads per stage.
        window_size: attention window ``ws``.
        mlp_ratio, qkv_bias: block MLP width factor and qkv bias.
        drop_path_rate: stochastic depth, rising linearly over all blocks from 0 to this value.
        patch_size, patch_norm: patch embedding stride and its LayerNorm.
        out_indices: stages to return (``i`` -> ``res{i+2}``), each with its own ``norm{i}``.
        frozen_stages: -1 trains everything; 0 freezes the patch embedding; ``k >= 1`` also stages ``< k``.
        fused_attn: window attention through ``scaled_dot_product_attention``.
    """

    def __init__(self, embed_dim: int = 96, depths: list[int] | tuple[int, ...] = (2, 2, 6, 2),
                 num_heads: list[int] | tuple[int, ...] = (3, 6, 12, 24), *, window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.2,
                 patch_size: int = 4, patch_norm: bool = True, out_indices: tuple[int, ...] = (0, 1, 2, 3),
                 frozen_stages: int = -1, fused_attn: bool = False):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError("depths and num_heads need one entry per stage")
        num_stages = len(depths)
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim, patch_norm)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        self.num_features = [embed_dim * 2**i for i in range(num_stages)]
        self.layers = nn.ModuleList()
        for i in range(num_stages):
            start = sum(depths[:i])
            self.layers.append(BasicLayer(
                self.num_features[i], depths[i], num_heads[i], window_size=window_size, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, drop_path=dpr[start:start + depths[i]], downsample=i < num_stages - 1,
                fused_attn=fused_attn,
            ))
        self.out_indices = tuple(out_indices)
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))
        self.out_channels = {f"res{i + 2}": self.num_features[i] for i in self.out_indices}
        self.strides = {f"res{i + 2}": patch_size * 2**i for i in self.out_indices}
        self.apply(_init_weights)
        self.frozen_stages = frozen_stages
        self._freeze_stages()

    @classmethod
    def from_config(cls, cfg: SwinConfig, **kwargs) -> "SwinTransformer":
        return cls(cfg.embed_dim, cfg.depths, cfg.num_heads, window_size=cfg.window_size, mlp_ratio=cfg.mlp_ratio,
                   qkv_bias=cfg.qkv_bias, drop_path_rate=cfg.drop_path_rate, patch_size=cfg.patch_size,
                   patch_norm=cfg.patch_norm, **kwargs)

    def _freeze_stages(self) -> None:
        frozen: list[nn.Module] = []
        if self.frozen_stages >= 0:
            frozen.append(self.patch_embed)
        frozen.extend(self.layers[: max(self.frozen_stages - 1, 0)])
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "SwinTransformer":
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``[B, 3, H, W]`` normalised image -> ``{"res{i+2}": [B, C_i, h_i, w_i]}``."""
        if x.dim() != 4:
            raise ValueError(f"SwinTransformer takes a [B, 3, H, W] tensor, got shape {tuple(x.shape)}")
        x = self.patch_embed(x)
        h, w = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose(1, 2)
        outs: dict[str, Tensor] = {}
        for i, layer in enumerate(self.layers):
            x_out, x, h_next, w_next = layer(x, h, w)
            if i in self.out_indices:
                y = getattr(self, f"norm{i}")(x_out)
                outs[f"res{i + 2}"] = y.view(-1, h, w, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
            h, w = h_next, w_next
        return outs


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
