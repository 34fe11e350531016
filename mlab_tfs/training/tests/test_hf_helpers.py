"""The helpers that put our models and tokenizers into transformers' Trainer, pinned by the
values they produce: a helper that runs but builds the wrong thing (an empty tokenizer, a
collator that masks real tokens) would leave the Trainer tests green."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.assets import shakespeare_text
from mlab_tfs.tokenizers import ByteLevelBPETokenizer
from mlab_tfs.training.hf import BlockDataset, causal_lm_collate, hf_bpe_tokenizer, hf_gpt2_config, twin_gpt2

transformers = pytest.importorskip("transformers")

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """(our BPE of 512 tokens, <|endoftext|> = 511, saved; transformers' tokenizer on the folder)."""
    ours = ByteLevelBPETokenizer().train(shakespeare_text()[:60_000], 512, special_tokens=[EOT])
    folder = tmp_path_factory.mktemp("bpe")
    ours.save_pretrained(folder)
    return ours, hf_bpe_tokenizer(folder)


def test_hf_bpe_tokenizer_has_our_vocabulary_ids_and_specials(bpe):
    ours, hf = bpe
    assert len(hf) == len(ours) == 512
    assert hf("ROMEO: hello")["input_ids"] == ours.encode("ROMEO: hello") == [82, 79, 77, 69, 79, 58, 295, 275, 111]
    assert hf.eos_token == hf.pad_token == EOT
    assert hf.eos_token_id == hf.pad_token_id == ours.special_tokens[EOT] == 511
    for line in shakespeare_text()[200_000:230_000].splitlines()[:200] + [f"end{EOT}start", "é中😀"]:
        assert hf(line)["input_ids"] == ours.encode(line, allowed_special="all"), line
        assert hf.decode(ours.encode(line, allowed_special="all")) == line


def test_language_model_collator_masks_end_of_text_padding_not_token_0(bpe):
    """DataCollatorForLanguageModeling(mlm=False): labels are the inputs with the pad id (our
    <|endoftext|>, 511) set to -100; real token 0 (the byte 0x00) keeps its label; short rows
    are padded with 511 and attention 0."""
    ours, hf = bpe
    first = ours.encode("Hark!\x00 A word!")
    assert 0 in first, "test setup: token 0 appears in the text"
    second = ours.encode("Hi<|endoftext|>", allowed_special="all")
    collator = transformers.DataCollatorForLanguageModeling(hf, mlm=False)
    batch = collator([{"input_ids": first}, {"input_ids": second}])
    n, m = len(first), len(second)
    assert n > m
    assert batch["input_ids"].tolist() == [first, second + [511] * (n - m)]
    assert batch["attention_mask"].tolist() == [[1] * n, [1] * m + [0] * (n - m)]
    assert batch["labels"].tolist() == [first, second[:-1] + [-100] * (n - m + 1)]


def test_hf_bpe_tokenizer_without_end_of_text_is_an_error(tmp_path):
    ByteLevelBPETokenizer().train(shakespeare_text()[:5_000], 260, special_tokens=["<s>"]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no <\\|endoftext\\|> token"):
        hf_bpe_tokenizer(tmp_path)


def test_hf_gpt2_config_values():
    config = hf_gpt2_config(vocab_size=512, n_layer=2)
    assert (config.resid_pdrop, config.embd_pdrop, config.attn_pdrop) == (0.0, 0.0, 0.0)
    assert (config.vocab_size, config.n_layer, config.bos_token_id, config.eos_token_id) == (512, 2, 511, 511)
    assert (hf_gpt2_config().eos_token_id, hf_gpt2_config(attn_pdrop=0.1).attn_pdrop) == (50256, 0.1)


def test_twin_gpt2_models_are_equal_and_separate():
    """Same logits and gradients (fp32 1e-5 / 1e-4), separate parameters, same tie."""
    hf, ours = twin_gpt2(seed=3, vocab_size=300, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    assert ours.config.eos_token_id == hf.config.eos_token_id == 299
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    a, b = hf(ids, labels=ids), ours(ids, labels=ids)
    torch.testing.assert_close(b["logits"], a.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(b["loss"], a.loss, rtol=0, atol=1e-5)
    a.loss.backward()
    b["loss"].backward()
    torch.testing.assert_close(ours.transformer.wte.weight.grad, hf.transformer.wte.weight.grad, rtol=1e-4, atol=1e-6)
    assert ours.transformer.wte.weight.data_ptr() != hf.transformer.wte.weight.data_ptr()
    assert ours.lm_head.weight is ours.transformer.wte.weight


def test_block_dataset_and_collate_values():
    data = BlockDataset(list(range(23)), 5)
    assert len(data) == 4 and data[3]["input_ids"].tolist() == [15, 16, 17, 18, 19]
    assert len(BlockDataset(list(range(23)), 5, 2)) == 2
    with pytest.raises(ValueError, match="23 tokens: too few for 5 blocks of 5"):
        BlockDataset(list(range(23)), 5, 5)
    batch = causal_lm_collate([data[0], data[1]])
    assert batch["input_ids"].tolist() == batch["labels"].tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1] * 5, [1] * 5]
    assert batch["labels"].data_ptr() != batch["input_ids"].data_ptr()


def test_model_folder_with_a_tokenizer_saved_by_transformers(bpe, tmp_path):
    """An exported folder whose tokenizer transformers 5 re-saved (tokenizer.json, no vocab.json):
    `mlab-tfs sample`'s loader reads it, with the ids of the original."""
    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel
    from mlab_tfs.training.commands import load_model_folder

    ours, hf = bpe
    GPT2LMHeadModel(GPT2Config(vocab_size=512, n_positions=32, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    hf.save_pretrained(tmp_path)
    assert not (tmp_path / "vocab.json").exists() and (tmp_path / "tokenizer.json").is_file()
    _, tok = load_model_folder(tmp_path)
    text = "ROMEO: hello<|endoftext|>"
    assert tok.encode(text, allowed_special="all") == ours.encode(text, allowed_special="all") == hf(text)["input_ids"]
    assert tok.pad_token == "<|endoftext|>"


def test_hf_bpe_tokenizer_bad_folders(tmp_path):
    """Not a path, or not a saved tokenizer's folder: our error naming the argument, not
    transformers' attempt to reach a hub repo of that name."""
    for bad in (5, None, b"folder"):
        with pytest.raises(TypeError, match="folder must be a path"):
            hf_bpe_tokenizer(bad)
    for bad in (tmp_path / "missing", tmp_path):
        with pytest.raises(FileNotFoundError, match="is not a folder with tokenizer_config.json"):
            hf_bpe_tokenizer(bad)


def test_hf_bpe_tokenizer_counts_every_special_token(tmp_path):
    """Special tokens beyond <|endoftext|> are special for transformers too (saved as
    extra_special_tokens): the same ids, all_special_ids and special-tokens masks, so that
    DataCollatorForLanguageModeling never masks them."""
    ours = ByteLevelBPETokenizer().train(shakespeare_text()[:20_000], 300, special_tokens=["<pad>", EOT, "<mask>"])
    ours.save_pretrained(tmp_path)
    hf = hf_bpe_tokenizer(tmp_path)
    assert ours.special_tokens == {"<pad>": 297, EOT: 298, "<mask>": 299}
    assert sorted(hf.all_special_ids) == sorted(ours.all_special_ids) == [297, 298, 299]
    ids = ours.encode("a<pad>b<mask>c<|endoftext|>", allowed_special="all")
    assert ids == hf("a<pad>b<mask>c<|endoftext|>")["input_ids"] == [97, 297, 98, 299, 99, 298]
    assert hf.get_special_tokens_mask(ids, already_has_special_tokens=True) == \
        ours.get_special_tokens_mask(ids, already_has_special_tokens=True) == [0, 1, 0, 1, 0, 1]
    again = ByteLevelBPETokenizer.from_pretrained(tmp_path)
    assert again.special_tokens == ours.special_tokens and again.encode("x<mask>", "all") == [120, 299]
