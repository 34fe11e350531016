"""The numbers the Llama guide states, computed with the solution (and the figures' data)."""

from __future__ import annotations

import torch

from mlab_tfs.llama import figures, solution
from mlab_tfs.testing.compare import assert_close


def test_rotary_scores_are_constant_along_diagonals():
    scores = figures.rotary_scores()
    for offset in (-20, -3, 0, 1, 7, 30):
        diagonal = scores.diagonal(offset)
        assert float((diagonal - diagonal[0]).abs().max()) < 1e-4, f"offset {offset}"
    assert abs(float(scores[5, 3] - scores[3, 5])) > 0.1  # the score is not symmetric in m - n


def test_llama31_frequency_bands():
    """hd 128, rope_theta 500000, llama3 factor 8 from 8192 positions: 29 kept, 29 divided, 6 blended;
    the first pair's wavelength 2 pi tokens."""
    assert figures.llama3_bands() == {"kept": 29, "divided": 29, "blended": 6}
    before, after = figures.llama3_wavelengths()
    assert abs(float(before[0]) - 2 * torch.pi) < 1e-5 and float(after[-1] / before[-1]) == 8.0


def test_interleaved_weights_need_the_permutation():
    """Meta-layout q/k weights: the interleaved scores equal the rotate-half scores of the
    permuted weights (to float precision) and not those of the unpermuted ones."""
    torch.manual_seed(0)
    nh, hd, C, T = 2, 8, 16, 6
    wq, wk, x = torch.randn(nh * hd, C), torch.randn(nh * hd, C), torch.randn(1, T, C)
    config = figures._config(hd, dict(rope_type="default", rope_theta=10000.0))
    inv = solution.rope_frequencies(config)
    angles = torch.arange(T)[None, :, None].float() * inv  # (1, T, hd/2)

    def scores(wq, wk, interleaved):
        q = (x @ wq.T).view(1, T, nh, hd).transpose(1, 2)
        k = (x @ wk.T).view(1, T, nh, hd).transpose(1, 2)
        if interleaved:
            emb = angles.repeat_interleave(2, dim=-1)[:, None]
            q = q * emb.cos() + solution.rotate_interleaved(q) * emb.sin()
            k = k * emb.cos() + solution.rotate_interleaved(k) * emb.sin()
        else:
            emb = torch.cat([angles, angles], -1)
            q, k = solution.apply_rotary_pos_emb(q, k, emb.cos(), emb.sin())
        return q @ k.transpose(-1, -2)

    meta = scores(wq, wk, True)
    permuted = scores(solution.interleaved_to_half(wq, nh), solution.interleaved_to_half(wk, nh), False)
    assert_close(permuted, meta, name="rotate-half scores of permuted weights", atol=1e-4)
    assert float((scores(wq, wk, False) - meta).abs().max()) > 1.0


def test_gqa_cache_of_llama3_8b():
    """32 layers, 8 of 32 heads, hd 128, bfloat16: 128 KiB per token (512 KiB without sharing);
    1 GiB against 4 GiB at 8192 tokens."""
    layers, nkv, nh, hd, bytes_ = 32, 8, 32, 128, 2
    per_token = 2 * layers * nkv * hd * bytes_
    assert per_token == 128 * 2**10 and 2 * layers * nh * hd * bytes_ == 512 * 2**10
    assert per_token * 8192 == 2**30


def test_swiglu_parameters_match_a_4c_mlp():
    C, F = 4096, 11008
    assert 3 * C * F == 135_266_304 and 2 * C * 4 * C == 134_217_728
    assert abs(3 * C * F / (2 * C * 4 * C) - 1) < 0.008
    assert F % 256 == 0 and F - 256 < 8 * C / 3 <= F  # 8C/3 rounded up to a multiple of 256


def test_eps_inside_the_root():
    """Features of size 1e-3, eps 1e-6: 0.7071 with eps inside the root, 0.9990 outside."""
    norm = solution.RMSNorm(8, eps=1e-6)
    x = torch.full((8,), 1e-3)
    with torch.no_grad():
        assert abs(float(norm(x)[0]) - 2**-0.5) < 1e-4
    assert abs(float(x[0] / (x.pow(2).mean().sqrt() + 1e-6)) - 0.999) < 1e-4


def test_rms_norm_cast_order_decides_the_last_bit_in_bfloat16():
    """The guide's measurement: (weight * x_normed).to(bf16) against transformers'
    weight * x_normed.to(bf16), on a seeded (4, 9, 64) bfloat16 input: 565 of 2304 outputs differ."""
    torch.manual_seed(2)
    x = (torch.randn(4, 9, 64) * 3 + 1).to(torch.bfloat16)
    w = (1 + 0.1 * torch.randn(64)).to(torch.bfloat16)
    x_normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)  # as transformers
    ours = (w * x_normed.to(torch.bfloat16))
    other = (w.float() * x_normed).to(torch.bfloat16)
    assert int((ours != other).sum()) == 565 and ours.numel() == 2304
