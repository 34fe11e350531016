"""`mlab-tfs train --arch llama`: the settings map to LlamaConfig, the exported folder loads in
transformers' LlamaForCausalLM with the recorded held-out loss, `mlab-tfs sample` reads either
arch, and the Llama recipe is the GPT-2 course recipe with a network of the same size."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from pathlib import Path

import pytest
import torch

from mlab_tfs.cli import main as cli_main
from mlab_tfs.training.loop import (
    TrainConfig,
    check_config,
    evaluate,
    llama_intermediate_size,
    load_config,
    model_class,
    model_config,
    prepare_data,
    select_eval_blocks,
    train,
)

from .conftest import with_

TRAINING = Path(__file__).resolve().parents[1]
LLAMA = dict(arch="llama", n_kv_head=1, intermediate_size=48, rope_theta=500000.0)


def llama_parameters(vocab: int, width: int, layers: int, heads: int, kv_heads: int, mlp: int) -> int:
    """By hand: tied embedding; per block q, o (width^2 each), k, v (width x kv_heads x head size),
    three SwiGLU matrices, two RMSNorm weights; the final RMSNorm."""
    head = width // heads
    block = 2 * width * width + 2 * width * kv_heads * head + 3 * width * mlp + 2 * width
    return vocab * width + layers * block + width


@pytest.fixture(scope="module")
def llama_run(small_corpus, tmp_path_factory):
    """A 12-step Llama run: 2 blocks of width 32, 2 query heads sharing 1 key/value head,
    SwiGLU width 48, rope base 500,000 (Llama 3's), dropout 0.1 on the attention."""
    from .conftest import tiny

    cfg = tiny(small_corpus, tmp_path_factory.mktemp("llama") / "run", **LLAMA, max_steps=12, eval_every=12,
               checkpoint_every=100)
    return cfg, train(cfg)


def test_llama_settings_map_to_llama_config(llama_run):
    cfg, summary = llama_run
    written = json.loads((Path(cfg.out) / "model" / "config.json").read_text())
    expected = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 300,
                "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                "head_dim": 16, "intermediate_size": 48, "max_position_embeddings": 64, "attention_dropout": 0.1,
                "tie_word_embeddings": True, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
                "bos_token_id": 299, "eos_token_id": 299}
    assert {k: written[k] for k in expected} == expected
    assert summary["parameters"] == llama_parameters(300, 32, 2, 2, 1, 48) == 25_120
    assert summary["arch"] == "llama" and summary["parallel"] is None
    assert summary["losses"][-1] < summary["losses"][0] - 0.4  # it learns: 5.70 -> 5.09 in 12 steps


def test_unset_llama_settings_take_their_defaults():
    """n_kv_head unset: no sharing; intermediate_size unset: ceil(8 x 256 / 3 / 16) x 16 = 688;
    rope_theta unset: 10,000."""
    config = model_config(TrainConfig(arch="llama"), vocab_size=4096, eot=0)
    assert (config.num_key_value_heads, config.intermediate_size, config.rope_parameters["rope_theta"]) == \
        (8, 688, 10000.0)
    assert [llama_intermediate_size(n) for n in (24, 32, 48, 256, 768, 4096)] == [64, 96, 128, 688, 2048, 10928]


def test_the_exported_llama_gives_the_recorded_loss_in_ours_and_transformers(llama_run):
    """The recipe's held-out loss comes back from the folder alone (fp16 weights, fp32 on the
    CPU, 1e-5); transformers' LlamaForCausalLM loads it with no missing or unexpected key and
    the same logits (1e-5)."""
    import transformers

    from mlab_tfs.llama import LlamaForCausalLM
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer

    cfg, summary = llama_run
    folder = Path(cfg.out) / "model"
    recipe = json.loads((folder / "recipe.json").read_text())
    assert recipe["final_eval_loss"] == summary["final_eval_loss"]
    _, _, held_out = prepare_data(TrainConfig(**recipe["config"]), ByteLevelBPETokenizer.from_pretrained(folder))
    blocks = select_eval_blocks(held_out, cfg.eval_blocks)
    ours = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert evaluate(ours, blocks, 4) == pytest.approx(recipe["final_eval_loss"], abs=1e-5)
    hf, info = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    assert info["missing_keys"] == set() or info["missing_keys"] == []
    assert not info["unexpected_keys"]
    assert evaluate(hf, blocks, 4) == pytest.approx(recipe["final_eval_loss"], abs=1e-5)
    torch.testing.assert_close(hf.eval()(blocks[:2]).logits, ours(blocks[:2]).logits, rtol=0, atol=1e-5)


def test_sample_reads_the_llama_folder(llama_run, capsys):
    """`mlab-tfs sample --model` picks LlamaForCausalLM from model_type and prints what
    generate gives on the same weights and seed."""
    from mlab_tfs.llama import LlamaForCausalLM
    from mlab_tfs.sampling import generate
    from mlab_tfs.tokenizers import ByteLevelBPETokenizer

    folder = Path(llama_run[0].out) / "model"
    capsys.readouterr()
    assert cli_main(["sample", "ROMEO:", "--model", str(folder), "--max-new-tokens", "10", "--seed", "5"]) == 0
    text = capsys.readouterr().out
    tok = ByteLevelBPETokenizer.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prompt, eot = tok.encode("ROMEO:"), tok.encoder["<|endoftext|>"]
    ids = generate(model, torch.tensor([prompt]), max_new_tokens=10, do_sample=True, temperature=0.8, top_k=40,
                   eos_token_id=eot, pad_token_id=eot, generator=torch.Generator().manual_seed(5))[0].tolist()
    if eot in ids[len(prompt):]:
        ids = ids[: len(prompt) + ids[len(prompt):].index(eot)]
    assert text == tok.decode(ids) + "\n" and text.startswith("ROMEO:")


def test_init_from_a_llama_folder(llama_run, tmp_path):
    """arch "llama" starts from the trained folder (its first loss is the trained model's, below
    a fresh start's); arch "gpt2" refuses it before any work, naming the model type."""
    cfg, summary = llama_run
    folder = Path(cfg.out) / "model"
    again = train(with_(cfg, init_from=str(folder), max_steps=2, warmup_steps=1, eval_every=2, out=str(tmp_path / "again")))
    assert again["losses"][0] < summary["losses"][0] - 0.4
    plain = {f.name: getattr(cfg, f.name) for f in fields(TrainConfig) if f.name not in LLAMA}
    with pytest.raises(ValueError, match=r"holds a model of model_type 'llama'; arch 'gpt2' starts from model_type "
                                         r"'gpt2'"):
        check_config(TrainConfig(**{**plain, "init_from": str(folder)}))
    from mlab_tfs.testing import tiny

    gpt2 = tiny.gpt2_checkpoint(tmp_path / "gpt2", "base")
    with pytest.raises(ValueError, match=r"model_type 'gpt2'; arch 'llama' starts from model_type 'llama' or 'qwen3'"):
        check_config(with_(cfg, init_from=str(gpt2)))


BAD_LLAMA = [
    (dict(n_head=4, n_kv_head=3), r"n_head \(4\) must be divisible by n_kv_head \(3\)"),
    (dict(n_embd=36, n_head=4), r"the head size n_embd / n_head \(9\) must be even"),
    (dict(rope_theta=0.0), r"rope_theta must be > 0 \(or unset: 10000.0\), got 0.0"),
    (dict(rope_theta=-1.0), r"rope_theta must be > 0 \(or unset: 10000.0\), got -1.0"),
    (dict(block_size=128), r"block_size \(128\) must not exceed n_positions \(64\): the model's "
                           r"max_position_embeddings"),
]


@pytest.mark.parametrize("changes, message", BAD_LLAMA, ids=[str(c) for c, _ in BAD_LLAMA])
def test_bad_llama_settings_are_refused_before_any_work(tiny_config, changes, message, capsys, tmp_path):
    cfg = with_(tiny_config, **{**LLAMA, **changes})
    with pytest.raises(ValueError, match=message):
        train(cfg)
    toml = tmp_path / "tiny.toml"  # the tiny run's settings; the Llama ones come as flags
    toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in asdict(tiny_config).items() if v is not None))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**LLAMA, **changes}.items()]
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--config", str(toml), *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("mlab-tfs train: error: bad settings")
    assert re.search(message, err)
    assert not Path(tiny_config.out).exists()


def test_llama_recipe_is_the_course_recipe_with_a_llama_of_the_same_size():
    """llama_course.toml is the GPT-2 course model's recipe from before the induction data (no
    repeated rows, dropout 0.2, evaluations and checkpoints every 250 steps: what the Llama was
    compared with) with a Llama: it differs from course_model.toml only in those settings, the
    arch, the Llama's own settings and the output folder; its model has 5,844,224 parameters
    (as its comment says), 99.85% of the GPT-2 course model's 5,853,184."""
    gpt2 = load_config(TRAINING / "course_model.toml")
    llama = load_config(TRAINING / "llama_course.toml")
    differ = {k for k, v in asdict(llama).items() if asdict(gpt2)[k] != v}
    assert differ == {"arch", "n_kv_head", "intermediate_size", "rope_theta", "out",
                      "repeat_fraction", "repeat_text_fraction", "dropout", "eval_every", "checkpoint_every"}
    assert (llama.repeat_fraction, llama.repeat_text_fraction, llama.dropout) == (0.0, 0.0, 0.2)
    counts = {}
    for cfg in (gpt2, llama):
        with torch.device("meta"):
            model = model_class(cfg.arch)(model_config(cfg, cfg.vocab_size, cfg.vocab_size - 1))
        counts[cfg.arch] = sum(p.numel() for p in model.parameters())
    assert counts == {"gpt2": 5_853_184, "llama": 5_844_224}
    assert counts["llama"] == llama_parameters(4096, 256, 6, 8, 4, 784)
    comment = (TRAINING / "llama_course.toml").read_text()
    assert "5,844,224 parameters against GPT-2's 5,853,184 (99.85%)" in comment
    assert f"{counts['llama'] / counts['gpt2']:.2%}" == "99.85%"


def test_sample_refuses_a_model_type_it_cannot_load(llama_run, tmp_path, capsys):
    import shutil

    folder = shutil.copytree(Path(llama_run[0].out) / "model", tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(SystemExit) as e:
        cli_main(["sample", "--model", str(folder)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == (f"mlab-tfs sample: error: --model: {folder / 'config.json'} has model_type "
                                         "'bert'; mlab-tfs sample loads model_type 'gpt2' / 'llama' / 'qwen3'\n")


def test_an_interrupted_llama_run_resumes_to_the_same_losses(llama_run, tmp_path):
    """Checkpoints every 4 steps, killed after step 6, resumed from step 4: the 12 losses and
    the final held-out loss equal the uninterrupted run's bit for bit (attention dropout is
    on, so the random state comes back too)."""
    cfg, summary = llama_run
    cut = with_(cfg, checkpoint_every=4, out=str(tmp_path / "cut"))
    assert train(cut, stop_after=6)["interrupted_at"] == 6
    resumed = train(cut, resume=True)
    assert resumed["losses"] == summary["losses"] and len(summary["losses"]) == 12
    assert resumed["final_eval_loss"] == summary["final_eval_loss"]
