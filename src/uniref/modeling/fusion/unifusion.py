"""UniFusion: inject a reference (language and/or mask) into every projected visual level.

One instance is shared by all feature levels and by both reference kinds. Per level, the flattened visual
tokens attend to the reference tokens (cross-attention), and the result is modulated adaLN-style by the
reference's pooled embedding: ``o = gate * (attn * (1 + scale) + shift)``; the block returns ``s + o_L + o_M``.

Naming: ``B`` batch, ``L`` visual tokens of one level (``h * w``), ``N`` reference tokens, ``C`` channels,
``H`` heads, ``D`` head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uniref.modeling.reference.features import ReferenceFeatures


def reference_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    scale: float,
    dropout_p: float = 0.0,
    max_scores: int = 1 << 25,
    group_scores: int = 1 << 22,
) -> Tensor:
    """Softmax attention over the valid keys only, the way the official varlen kernel sees them.

    Keys and values are first gathered down to the valid positions (like flash-attn's ``unpad_input``), so
    padding never enters a reduction; this reproduces the official float32 substitute bit for bit, which
    a masked kernel does not (its reductions run over a different length).

    Args:
        q: ``[B, H, L, D]``, or ``[1, H, L, D]`` shared by every batch entry; k, v: ``[B, H, N, D]``.
        key_padding_mask: ``[B, N]`` bool, True at padding, or None.
        scale: softmax scale.
        dropout_p: dropout on the attention probabilities.
        max_scores: bound on the elements of one batch entry's score block; its queries are processed in
            chunks under it (the chunks, hence the float results, do not depend on the batch size).
        group_scores: batch entries are processed together while their score blocks stay under this bound
            (a block that fits in cache is faster than one large batched block; the results are the same).

    Returns:
        ``[B, H, L, D]``; zeros for a batch entry without any valid key.
    """
    b, h, n, d = k.shape
    l = q.shape[2]
    shared_q = q.shape[0] == 1 and b > 1
    valid = (
        torch.ones(b, n, dtype=torch.bool, device=q.device)
        if key_padding_mask is None
        else ~key_padding_mask.bool()
    )
    counts = valid.sum(dim=1)
    out = q.new_zeros(b, h, l, d)
    # Entries with the same number of valid keys are gathered and computed together.
    for count in counts.unique().tolist():
        if count == 0:
            continue
        rows = (counts == count).nonzero()[:, 0]
        every_row = len(rows) == b
        kr, vr = (k, v) if every_row else (k[rows], v[rows])
        qr = q if every_row or shared_q else q[rows]
        if count < n:
            pos = valid[rows].nonzero()[:, 1].view(len(rows), 1, count, 1).expand(-1, h, -1, d)
            kr, vr = kr.gather(2, pos), vr.gather(2, pos)
        chunk = max(1, max_scores // (h * count))
        group = max(1, group_scores // (h * count * min(chunk, l)))
        for first in range(0, len(rows), group):
            last = min(first + group, len(rows))
            qg = qr if shared_q else qr[first:last]  # a shared q broadcasts over the group
            kg, vg = kr[first:last].transpose(-1, -2), vr[first:last]
            target = slice(first, last) if every_row else rows[first:last]
            for start in range(0, l, chunk):
                stop = min(start + chunk, l)
                probs = ((qg[:, :, start:stop] @ kg) * scale).softmax(dim=-1)
                if dropout_p > 0.0:
                    probs = F.dropout(probs, p=dropout_p)
                out[target, :, start:stop] = probs @ vg
    return out


def _drop_common_padding(key: Tensor, value: Tensor, key_padding_mask: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """Keep only the valid reference tokens when every batch entry has the same number of them.

    The attention core would gather exactly these tokens after the projections; gathering the ``C``-wide
    inputs first is cheaper (the projections are ``H * D`` wide) and skips projecting padding. Every row of
    a linear layer is computed on its own, so the values are the same. Entries with different counts keep
    their mask (the core groups them).

    Args:
        key, value: ``[B, N, C]``; key_padding_mask: ``[B, N]`` bool, True at padding.

    Returns:
        ``[B, n, C]`` keys and values and the mask (None once no padding is left).
    """
    valid = ~key_padding_mask.bool()
    counts = valid.sum(dim=1)
    count = int(counts[0])
    if bool((counts != count).any()) or count == 0:
        return key, value, key_padding_mask  # ragged, or nothing valid: the core handles both
    if count == key.shape[1]:
        return key, value, None
    pos = valid.nonzero()[:, 1].view(key.shape[0], count, 1)
    return (key.gather(1, pos.expand(-1, -1, key.shape[2])), value.gather(1, pos.expand(-1, -1, value.shape[2])),
            None)


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, scale: float, dropout_p: float = 0.0
) -> Tensor:
    """``scaled_dot_product_attention`` with a key-padding mask; same contract as :func:`reference_attention`."""
    attn_mask = None
    empty = None
    if key_padding_mask is not None:
        valid = ~key_padding_mask.bool()
        empty = ~valid.any(dim=1)
        # A fully padded row would make the softmax NaN; let it attend everywhere and zero it below.
        valid = valid | empty[:, None]
        attn_mask = valid[:, None, None, :]  # [B, 1, 1, N], True = attend
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
    if empty is not None and bool(empty.any()):
        out = out.masked_fill(empty[:, None, None, None], 0.0)
    return out


class UniMultiHeadAttention(nn.Module):
    """Cross-attention with a key-padding mask, ``num_heads`` heads of width ``head_dim``.

    State-dict names follow the official module: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``.

    Two switches, both plain attributes that can be changed at any time:

    * ``bf16``: the official module always runs the attention core in bfloat16 (flash-attn). With
      ``bf16=True`` q, k and v are rounded to bf16, the core runs in float32 on those values and its result
      is rounded to bf16 again before ``out_proj`` (the official numerics). False keeps the input dtype.
    * ``fused``: True runs the core with ``scaled_dot_product_attention`` (fast, memory-efficient);
      False runs :func:`reference_attention`, which reproduces the official varlen kernel bit for bit.
      Both compute the same function; they differ in the last float bit, which the bf16 rounding of the
      output can turn into one bf16 step (~4e-3 relative) on a few elements.
    """

    def __init__(
        self, dim: int, num_heads: int, head_dim: int, dropout: float = 0.1, *, bf16: bool = True, fused: bool = False
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.bf16 = bf16
        self.fused = fused
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """Attend from ``query`` to the reference tokens.

        Args:
            query: ``[B, L, C]`` (already ``norm_v``-normalised visual tokens), or ``[1, L, C]`` shared by
                every reference of the batch (one frame, several objects: projected once).
            key: ``[B, N, C]`` (already ``norm_l``-normalised reference keys).
            value: ``[B, N, C]`` reference values.
            key_padding_mask: ``[B, N]`` bool, True at padding; None means every key is valid.

        Returns:
            ``[B, L, C]`` in the dtype of ``query``. A batch entry whose keys are all padding gets a zero
            attention core (so only the ``out_proj`` bias), as the official varlen kernel would.
        """
        b, l = key.shape[0], query.shape[1]
        if key_padding_mask is not None and not self.fused:
            key, value, key_padding_mask = _drop_common_padding(key, value, key_padding_mask)
        n = key.shape[1]
        # [B, tokens, H*D] -> [B, H, tokens, D]
        q = self.q_proj(query).view(query.shape[0], l, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(key).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(value).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        if self.bf16:
            q, k, v = (t.to(torch.bfloat16).to(query.dtype) for t in (q, k, v))
        if self.fused and q.shape[0] != b:
            q = q.expand(b, -1, -1, -1)
        core = sdpa_attention if self.fused else reference_attention
        dropout_p = self.dropout if self.training else 0.0
        out = core(q, k, v, key_padding_mask, self.head_dim**-0.5, dropout_p)
        if self.bf16:
            out = out.to(torch.bfloat16).to(query.dtype)
        out = out.transpose(1, 2).reshape(b, l, self.num_heads * self.head_dim)
        return self.out_proj(out)


class UniFusion(nn.Module):
    """Reference fusion shared across levels and reference kinds (official ``UniFusion``).

    Args:
        d_model: channels of the visual levels and of the references.
        num_heads: attention heads.
        head_dim: width of each head (the inner attention width is ``num_heads * head_dim``).
        dropout: attention-probability dropout, active only in training.
        bf16_attention: reproduce the official bf16 rounding of q/k/v and of the attention core output
            (default, for parity with official checkpoints); False runs the attention fully in the input
            dtype. Can be changed later through the attribute of the same name.
        fused_attention: run the attention core with ``scaled_dot_product_attention`` (True: about 2x
            faster on CPU, memory-efficient kernels on GPU) or with the explicit varlen formulation that
            matches the official kernel bit for bit (False, the default, for parity); see
            :class:`UniMultiHeadAttention`. Also an attribute.
        gate_init: initial value of the modulation's gate bias. 0 (official) starts the block as the
            identity; 1 lets the reference in from the first step (training from scratch).
    """

    def __init__(
        self,
        d_model: int = 256,
        num_heads: int = 8,
        head_dim: int = 256,
        dropout: float = 0.1,
        *,
        bf16_attention: bool = True,
        fused_attention: bool = False,
        gate_init: float = 0.0,
    ):
        super().__init__()
        self.norm_v = nn.LayerNorm(d_model)
        self.norm_l = nn.LayerNorm(d_model)
        self.attn = UniMultiHeadAttention(
            d_model, num_heads, head_dim, dropout, bf16=bf16_attention, fused=fused_attention
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d_model, 3 * d_model))
        # Zero modulation makes the whole block start as the identity (the official choice: fusion is added to
        # a pretrained detector). A non-zero gate opens it from the start, for networks trained from scratch.
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)
        with torch.no_grad():
            self.adaLN_modulation[1].bias[2 * d_model:] = gate_init

    @property
    def bf16_attention(self) -> bool:
        return self.attn.bf16

    @bf16_attention.setter
    def bf16_attention(self, value: bool) -> None:
        self.attn.bf16 = bool(value)

    @property
    def fused_attention(self) -> bool:
        return self.attn.fused

    @fused_attention.setter
    def fused_attention(self, value: bool) -> None:
        self.attn.fused = bool(value)

    def modulation(self, embeds: Tensor) -> Tensor:
        """``[B, C]`` pooled reference embedding -> ``[B, 3C]`` = (shift, scale, gate)."""
        return self.adaLN_modulation(embeds)

    def attend(self, x: Tensor, refs: Tensor, values: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Attention output ``[B, L, C]`` for visual tokens ``x`` ``[B, L, C]`` and one reference level."""
        return self.attn(self.norm_v(x), self.norm_l(refs), values, padding_mask)

    def branch(self, x: Tensor, ref: ReferenceFeatures, level: int) -> Tensor:
        """The modulated contribution ``o = gate * (attn * (1 + scale) + shift)`` ``[B, L, C]``.

        Args:
            x: ``[B, L, C]`` flattened visual tokens of level ``level`` (or ``[1, L, C]`` shared by a batch of
                ``B`` references).
            ref: the reference; a single-level (language) reference serves every level.
        """
        refs, values, padding_mask, embeds = ref.level(level)
        attn_out = self.attend(x, refs, values, padding_mask)
        shift, scale, gate = self.modulation(embeds).chunk(3, dim=-1)
        return gate[:, None] * (attn_out * (1 + scale[:, None]) + shift[:, None])

    def forward(
        self,
        srcs: list[Tensor],
        lang: ReferenceFeatures | None = None,
        mask: ReferenceFeatures | None = None,
    ) -> list[Tensor]:
        """Fuse the references into every level.

        Args:
            srcs: per level ``[B, C, h, w]`` projected visual features, or ``[1, C, h, w]`` of one frame fused
                with each of ``B`` references (several objects): the visual side is then normalised and
                projected once, with the same values as for ``B`` copies.
            lang: language reference (one level serving all), or None.
            mask: mask reference (one entry per level), or None.

        Returns:
            per level ``[B, C, h, w]`` = ``s + o_L + o_M`` (absent references contribute nothing).
        """
        outs = []
        for lvl, src in enumerate(srcs):
            c, h, w = src.shape[1:]
            x = src.flatten(2).transpose(1, 2)  # [B or 1, h*w, C]
            y = x
            if lang is not None:
                y = y + self.branch(x, lang, lvl)
            if mask is not None:
                y = y + self.branch(x, mask, lvl)
            outs.append(y.transpose(1, 2).reshape(y.shape[0], c, h, w))  # broadcast to the references' batch
        return outs
