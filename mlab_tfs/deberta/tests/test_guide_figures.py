"""The data the guide's DeBERTa figures show (mlab_tfs/deberta/figures.py), held to the solution's
functions, to transformers' and to values worked out by hand in GUIDE.md."""

from __future__ import annotations

import torch
from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position as hf_buckets

from mlab_tfs.deberta import figures


def test_bucket_curve_is_transformers_buckets_and_clamp():
    distance, bucket, read = figures.bucket_curve()
    assert distance.tolist() == list(range(1025))
    assert torch.equal(bucket, hf_buckets(distance, 256, 512).long())
    # The values GUIDE.md quotes for v3's sizes: exact to mid, 256 -> 192, 511 -> 255 (the last row),
    # 506 the first distance to reach it, and past max_position the bucket grows on, clamped to 255.
    assert bucket[[100, 128, 129, 256, 505, 506, 511, 512, 1000, 1024]].tolist() == [
        100, 128, 129, 192, 254, 255, 255, 256, 317, 319]
    assert int(read.max()) == 255 and torch.equal(read[:512], bucket[:512])
    assert set(read[511:].tolist()) == {255}
    assert len(set(bucket[:512].tolist())) == 256  # distances 0..511 use 256 buckets


def test_relative_matrices_are_build_relative_position():
    raw, bucketed, row = figures.relative_matrices()
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    assert torch.equal(raw, i - j)
    assert torch.equal(bucketed, hf_buckets(i - j, 8, 12).long())
    # Distances 0..15 with bucket_size 8, max_position 12: exact to 4, then log buckets, 12..15 past the table.
    assert bucketed[15, :].flip(0).tolist() == [0, 1, 2, 3, 4, 5, 6, 6, 7, 7, 7, 7, 8, 8, 8, 8]
    assert torch.equal(bucketed, -bucketed.T)
    assert torch.equal(row, (bucketed + 8).clamp(0, 15))
    assert row[15, 0] == 15 and row[0, 15] == 0  # bucket 8 is past the last row (7 + 8); -8 is row 0


def test_repeated_token_terms_depend_on_distance_only():
    terms = figures.repeated_token_terms()
    c2c, c2p, p2c, pattern = terms["c2c"], terms["c2p"], terms["p2c"], terms["pattern"]
    assert torch.equal(c2c, torch.full_like(c2c, float(c2c[0, 0])))  # one token: one content score
    for term in (c2p, p2c):  # a function of i - j: constant along every diagonal, exactly
        assert torch.equal(term[1:, 1:], term[:-1, :-1])
        assert float(term.std()) > 0.5  # and the relative terms do vary (the picture is not flat)
    # The three terms are the whole score: their sum's softmax is the model's pattern.
    torch.testing.assert_close(torch.softmax(c2c + c2p + p2c, dim=-1), pattern, rtol=0, atol=1e-6)
    # The pattern itself is not a function of i - j: each row normalises over a different window of distances.
    assert not torch.allclose(pattern[1:, 1:], pattern[:-1, :-1], atol=1e-3)


def test_bucketed_distances_need_the_clamp_only_past_max_position():
    """GUIDE.md, c2p and The clamp: with v3's buckets the gather index r + k stays inside the
    2k = 512 rows up to T = max_position = 512, and leaves them at T = 513 (600 reaches 526)."""
    from mlab_tfs.deberta.solution import build_relative_position

    for T, inside in ((512, True), (513, False)):
        r = build_relative_position(T, T, 256, 512)
        assert (int((r + 256).min()) >= 0 and int((r + 256).max()) <= 511) == inside, T
    r = build_relative_position(600, 600, 256, 512)
    assert (int((r + 256).max()), int((-r + 256).min())) == (526, -14)
    r = build_relative_position(9, 9)  # no buckets, k = 8: a 9-token sequence already overflows
    assert int((r + 8).max()) == 16 and int((-r + 8).min()) == 0
