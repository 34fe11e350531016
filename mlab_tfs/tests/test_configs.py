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
