"""ConfigMixin: config.json reading and writing shared by every model's config."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mlab_tfs.configs import ConfigMixin, check_int


@dataclass
class ToyConfig(ConfigMixin):
    width: int = 8
    depth: int = 2
    attn_implementation: str = "sdpa"

    model_type = "toy"
    architectures = ("ToyModel",)
    attribute_map = {"hidden_size": "width"}
    unsupported = {"is_decoder": False}

    def __post_init__(self):
        check_int(self, "width", minimum=1)


def test_from_dict_reads_fields_aliases_and_the_private_attention_name():
    c = ToyConfig.from_dict({"model_type": "toy", "hidden_size": 16, "depth": 3, "unused": 1,
                             "_attn_implementation": "eager"})
    assert (c.width, c.depth, c.attn_implementation) == (16, 3, "eager")
    # The generic name wins over the field's own, as in transformers.
    assert ToyConfig.from_dict({"width": 4, "hidden_size": 5}).width == 5


def test_to_dict_writes_what_transformers_reads_and_round_trips():
    d = ToyConfig(width=12).to_dict()
    assert d == {"width": 12, "depth": 2, "is_decoder": False, "model_type": "toy", "architectures": ["ToyModel"]}
    assert ToyConfig.from_dict(d) == ToyConfig(width=12)


@pytest.mark.parametrize("d, message", [
    ({"model_type": "gpt2"}, r"config has model_type 'gpt2'; ToyConfig reads checkpoints with model_type 'toy'"),
    ({"is_decoder": True}, r"config has is_decoder=True; this implementation supports only is_decoder=False"),
    ({"width": 0}, r"ToyConfig.width must be >= 1, got 0"),
])
def test_from_dict_errors_name_the_setting(d, message):
    with pytest.raises(ValueError, match=message):
        ToyConfig.from_dict(d)


def test_from_dict_needs_a_dict():
    with pytest.raises(TypeError, match="ToyConfig.from_dict needs a dict"):
        ToyConfig.from_dict([("width", 3)])


# check_encoder_fields: each shared field, a bad value of the right type and one of the wrong
# type, in both encoder configs, and the boundary values that are still fine.
ENCODER_BAD = [
    ("vocab_size", 0, "must be >= 1"), ("hidden_size", True, "must be an int"),
    ("num_hidden_layers", 0, "must be >= 1"), ("num_attention_heads", 5, None),
    ("intermediate_size", 2.0, "must be an int"), ("max_position_embeddings", 0, "must be >= 1"),
    ("hidden_act", "gelu_tanh", "must be one of"), ("hidden_dropout_prob", 1.0, r"\[0, 1\)"),
    ("attention_probs_dropout_prob", -0.1, r"\[0, 1\)"), ("layer_norm_eps", 0.0, r"\(0, inf\)"),
    ("initializer_range", -1.0, r"\[0, inf\)"), ("pad_token_id", 99, r"\[0, vocab_size=99\)"),
    ("tie_word_embeddings", 1, "True or False"),
]


@pytest.mark.parametrize("part", ["bert", "deberta"])
@pytest.mark.parametrize("name, value, message", ENCODER_BAD, ids=[b[0] for b in ENCODER_BAD])
def test_encoder_configs_check_their_shared_fields(part, name, value, message):
    from mlab_tfs.bert.given import BertConfig
    from mlab_tfs.deberta.given import DebertaV2Config

    cls = BertConfig if part == "bert" else DebertaV2Config
    small = dict(vocab_size=99, hidden_size=8, num_attention_heads=2, intermediate_size=16)
    expected = rf"{cls.__name__}\.{name} .*{message}"
    if message is None:  # the divisibility error names the field divided
        expected = rf"{cls.__name__}\.hidden_size \(8\) must be divisible by num_attention_heads \(5\)"
    with pytest.raises(ValueError, match=expected):
        cls(**{**small, name: value})
    edge = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.0, pad_token_id=98,
                num_hidden_layers=1, max_position_embeddings=1, layer_norm_eps=1e-12)
    ok = cls(**{**small, **edge})
    assert [getattr(ok, k) for k in edge] == list(edge.values())
    assert cls(**{**small, "pad_token_id": None}).pad_token_id is None
