"""The data the guide's DeBERTa figures show (mlab_tfs/deberta/figures.py), held to the solution's
functions, to transformers' and to values worked out by hand in GUIDE.md; and the behaviours
GUIDE.md states in its prose and its understanding checks."""

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


def test_far_distances_read_the_outermost_row_on_each_side():
    """GUIDE.md, exercise 1 and the log-bucket figure: with v3's sizes, +506..+511 and every longer
    positive distance read row 511 (bucket 255), but on the negative side -506..-511 read row 1
    (bucket -255) and -512 and beyond row 0 (bucket -256), a row no distance within 511 reads."""
    d = torch.arange(-5000, 5001)
    rows = (hf_buckets(d, 256, 512).long() + 256).clamp(0, 511)
    assert rows[d >= 506].unique().tolist() == [511] and int(d[rows == 511].min()) == 506
    assert rows[(d <= -506) & (d >= -511)].unique().tolist() == [1]
    assert rows[d <= -512].unique().tolist() == [0] and int(d[rows == 0].max()) == -512


def _tiny(**overrides):
    from mlab_tfs.deberta.solution import DebertaV2Config

    kwargs = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  relative_attention=True, position_buckets=8, pos_att_type=["c2p", "p2c"], share_att_key=True,
                  norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0)
    kwargs.update(overrides)
    return DebertaV2Config(**kwargs)


def test_a_repeated_token_gives_the_same_output_everywhere():
    """GUIDE.md, The idea: ten copies of one token, no absolute positions: the outputs at different
    positions agree to float32 rounding (order 1e-7), though the attention weights differ."""
    from mlab_tfs.deberta.solution import DebertaV2Model

    for seed in range(3):
        torch.manual_seed(seed)
        model = DebertaV2Model(_tiny()).eval()
        with torch.no_grad():
            out = model(torch.full((1, 10), 5), output_attentions=True)
        hidden = out.last_hidden_state[0]
        assert float((hidden - hidden[0]).abs().max()) < 1e-6, seed
        pattern = out.attentions[0][0, 0]  # (T, T), head 0 of layer 0: rows differ by position
        assert float((pattern[1] - pattern[2]).abs().max()) > 1e-3, seed


def test_convolution_sees_right_padding_as_the_zero_border():
    """GUIDE.md, Embeddings: the padding rows are exactly zero after the mask multiply, so with the
    convolution (and everything else) a right-padded sequence gives, at its real positions, the
    outputs of the sequence alone."""
    from mlab_tfs.deberta.solution import DebertaV2Model

    torch.manual_seed(0)
    model = DebertaV2Model(_tiny(conv_kernel_size=3, conv_act="gelu", type_vocab_size=2)).eval()
    with torch.no_grad():  # a nonzero beta: a zero row normed would not be zero
        model.embeddings.LayerNorm.bias.normal_(0.0, 1.0)
    ids = torch.randint(1, 64, (1, 6), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    with torch.no_grad():
        alone = model(ids).last_hidden_state
        out = model(padded, attention_mask=mask, output_hidden_states=True)
    assert torch.equal(out.hidden_states[0][0, 6:], torch.zeros(3, 32))  # the embeddings' padding rows
    torch.testing.assert_close(out.last_hidden_state[:, :6], alone, rtol=0, atol=1e-5)
