"""``mlab-tfs train``: a plain PyTorch training loop for our GPT-2 or our Llama (``arch``).

One function, ``train(config)``, reads a corpus, tokenizes it, trains, evaluates, samples,
checkpoints and finally exports a folder that ``mlab-tfs sample`` (and transformers) load.
It runs as one process, or as several under ``torchrun``: data-parallel with every process
holding the whole model (``parallel = "ddp"``, DistributedDataParallel) or each holding a
shard of it (``parallel = "fsdp"``, PyTorch's FSDP2 ``fully_shard``); gloo on CPU, NCCL on
GPUs. GUIDE.md explains every piece.

Output folder (``config.out``):
    run.lock             flock-ed by the run using the folder (a second run is refused)
    log.jsonl            one JSON record per step (loss, lr, grad norm, tokens/s) and per eval
    loss.png             the loss curves (needs matplotlib)
    checkpoint/          for --resume, written as one unit (mlab_tfs.durable.atomic_folder):
      state.pt           model, optimizer, step, data position, log position, config
      rng-<rank>.pt      every process's random-number state at that step
    tokenizer/           vocab.json + merges.txt the run tokenizes with
    model/               config.json, model.safetensors (fp16), vocab.json, merges.txt, recipe.json

Every file is written atomically (mlab_tfs.durable), except log.jsonl, which is appended one
whole line per write; a checkpoint records the log's length, and a resumed run cuts the log
back to it. Checkpoints of the earlier layout (checkpoint.pt + rng-<rank>.pt beside it) are
not resumed: --resume says so.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import random
import re
import sys
import time
import tomllib
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from mlab_tfs.checkpoints import CheckpointError, read_config
from mlab_tfs.durable import atomic_file, atomic_folder, write_bytes_atomic, write_text_atomic
from mlab_tfs.inputs import check_int
from mlab_tfs.training import data as D

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything a run depends on. Defaults: the course model's network and optimisation;
    course_model.toml sets the rest of its recipe (the induction data among it)."""

    # data
    corpus: list[str] = field(default_factory=list)  # files or folders of *.txt; [] = the Shakespeare plays
    eval_fraction: float = 0.05  # the last 5% of each document is held out
    tokenizer: str = "bpe"  # "bpe" (train our own), "gpt2" (GPT-2's vocabulary) or a folder
    vocab_size: int = 4096  # for "bpe", including <|endoftext|>
    repeat_fraction: float = 0.0  # share of training sequences made a span of random tokens repeated (data.with_repeats)
    repeat_text_fraction: float = 0.0  # share of training sequences made their own first span repeated
    # model
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 256
    n_positions: int = 256
    dropout: float = 0.1
    init_from: str | None = None  # start from a checkpoint folder of the arch instead of random weights
    arch: str = "gpt2"  # "gpt2" (GPT2LMHeadModel) or "llama" (LlamaForCausalLM; n_* map to LlamaConfig)
    n_kv_head: int | None = None  # llama: key/value heads (grouped-query attention); None = n_head
    intermediate_size: int | None = None  # llama: the SwiGLU width; None = llama_intermediate_size(n_embd)
    rope_theta: float | None = None  # llama: the rotary base; None = 10000.0
    # optimisation
    block_size: int = 256  # tokens per training sequence
    batch_size: int = 64  # sequences per optimizer step, over all processes and accumulation steps
    grad_accum: int = 1  # micro-batches per optimizer step (per process)
    max_steps: int = 2000
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # where the cosine ends
    warmup_steps: int | None = None  # None: min(100, max_steps // 10), see resolve_config
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    seed: int = 0
    # evaluation, samples, checkpoints
    eval_every: int = 250
    eval_blocks: int = 64  # held-out blocks per evaluation (evenly spread); 0 = all
    sample_prompt: str = "ROMEO:"
    sample_tokens: int = 64
    sample_temperature: float = 0.8
    sample_top_k: int = 40
    checkpoint_every: int = 250
    # machine
    device: str = "auto"  # "auto": cuda if there is one, else cpu
    amp: bool | None = None  # bf16 autocast; None = on where there is a GPU
    compile: bool | None = None  # torch.compile; None = on where there is a GPU
    parallel: str = "ddp"  # over several processes: "ddp" (whole model in each) or "fsdp" (FSDP2 shards)
    out: str = "runs/shakespeare"
    progress: bool = True  # the tqdm bar


DEFAULT_WARMUP = 100  # warmup_steps=None means min(DEFAULT_WARMUP, max_steps // 10)
DEFAULT_ROPE_THETA = 10000.0  # rope_theta=None for arch "llama": the base of Su et al. (2021) and Llama 2
ARCHES = ("gpt2", "llama")
LLAMA_ONLY = ("n_kv_head", "intermediate_size", "rope_theta")  # settings only arch "llama" reads
PARALLEL = ("ddp", "fsdp")


def llama_intermediate_size(n_embd: int) -> int:
    """The SwiGLU width that gives a Llama MLP GPT-2's MLP parameter count: three matrices of
    n_embd x width hold 8 n_embd^2 (two of n_embd x 4 n_embd) when width = 8 n_embd / 3 (the
    2/3 scaling of Shazeer 2020, "GLU Variants Improve Transformer"), rounded up to a
    multiple of 16. n_embd=256: 688."""
    return -(-8 * n_embd // 48) * 16  # ceil(8 n_embd / 3 / 16) * 16


# model_type in a config.json -> the arch whose class loads it
MODEL_TYPES = {"gpt2": "gpt2", "llama": "llama", "qwen3": "llama"}


def model_class(arch: str):
    """The causal LM class of ``arch``: GPT2LMHeadModel for "gpt2", LlamaForCausalLM for "llama".
    Raises ValueError for another name."""
    if arch == "gpt2":
        from mlab_tfs.gpt2 import GPT2LMHeadModel

        return GPT2LMHeadModel
    if arch == "llama":
        from mlab_tfs.llama import LlamaForCausalLM

        return LlamaForCausalLM
    raise ValueError(f"arch must be one of {list(ARCHES)}, got {arch!r}")


def _folder_model_type(folder: Path, what: str) -> str | None:
    """config.json's model_type in a model folder (None where it names none). Raises ValueError
    (prefixed with what) for a config.json that is not a JSON object."""
    try:
        return read_config(folder).get("model_type")
    except CheckpointError as e:
        raise ValueError(f"{what}: {e}") from None


def max_positions(config) -> int:
    """The longest sequence a model config allows: GPT-2's n_positions, Llama's max_position_embeddings."""
    return config.n_positions if hasattr(config, "n_positions") else config.max_position_embeddings

# Settings a resumed run may change: how long it goes on, what it reports and where it runs.
# They do not change what the checkpoint's state means; recipe.json records every change
# under "resumed". Every other setting must equal the checkpoint's (see resume_changes).
RESUME_MAY_CHANGE = ("max_steps", "eval_every", "eval_blocks", "sample_prompt", "sample_tokens",
                     "sample_temperature", "sample_top_k", "checkpoint_every", "device", "amp", "compile", "out",
                     "progress")
RESUME_FIXED = tuple(f.name for f in fields(TrainConfig) if f.name not in RESUME_MAY_CHANGE)


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(TrainConfig)}


def _type_ok(kind: str, value: Any) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return {
        "int": is_int,
        "int | None": value is None or is_int,
        "float | None": value is None or is_int or isinstance(value, float),
        "float": is_int or isinstance(value, float),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "str | None": value is None or isinstance(value, str),
        "bool | None": value is None or isinstance(value, bool),
        "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]


def _check_type(name: str, value: Any) -> Any:
    kind = _field_types()[name]
    if not _type_ok(kind, value):
        raise TypeError(f"config field {name} must be {kind}, got {type(value).__name__} {value!r}")
    return float(value) if kind == "float" or (kind == "float | None" and value is not None) else value


def config_from_dict(d: dict[str, Any], source: str = "config") -> TrainConfig:
    """A TrainConfig from a dict; unknown keys and wrong types are errors.

    Raises ValueError (unknown keys, naming them and the known ones) or TypeError (a value
    of the wrong type, naming the field, the type expected and the value given)."""
    if not isinstance(d, dict):
        raise TypeError(f"{source} must be a dict of settings, got {type(d).__name__}")
    known = _field_types()
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"{source} has unknown keys {unknown}; the known keys are {sorted(known)}")
    if isinstance(d.get("corpus"), str):
        d = {**d, "corpus": [d["corpus"]]}
    return TrainConfig(**{k: _check_type(k, v) for k, v in d.items()})


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a .toml or .json config file; overrides (e.g. from command-line flags) win.

    Raises FileNotFoundError (no such file), ValueError (another suffix, unreadable TOML or
    JSON, unknown keys) or TypeError (a value of the wrong type)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise FileNotFoundError(f"config file must be a path to a .toml or .json file, got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"config file {path} is a folder, not a .toml or .json file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        if path.suffix == ".toml":
            with path.open("rb") as f:
                d = tomllib.load(f)
        elif path.suffix == ".json":
            d = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise ValueError(f"config file must end in .toml or .json, got {path.name}")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"config file {path} is not valid {path.suffix[1:].upper()}: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"config file {path} must hold a table/object of settings")
    return config_from_dict({**d, **(overrides or {})}, source=f"config file {path}")


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """The config with the defaults that depend on other settings filled in: warmup_steps=None
    becomes min(DEFAULT_WARMUP, max_steps // 10), so a short run gets a proportionate warmup
    (2000 steps: 100, the course's; 30 steps: 3). Raises what check_config raises."""
    check_config(cfg)
    if cfg.warmup_steps is None:
        cfg = replace(cfg, warmup_steps=min(DEFAULT_WARMUP, cfg.max_steps // 10))
    return cfg


def check_config(cfg: TrainConfig, world_size: int = 1) -> None:
    """Check every setting before any work is done.

    Raises TypeError if cfg is not a TrainConfig or a setting has the wrong type (all of
    them named); then ValueError naming every setting out of range or contradicting another
    (NaN and infinity are out of every range); then FileNotFoundError / NotADirectoryError
    for a corpus, tokenizer, init_from or out path that cannot be used."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(cfg).__name__}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    kinds = _field_types()
    wrong = [f"{n} must be {k}, got {type(getattr(cfg, n)).__name__} {getattr(cfg, n)!r}"
             for n, k in kinds.items() if not _type_ok(k, getattr(cfg, n))]
    if wrong:
        raise TypeError("config settings of the wrong type: " + "; ".join(wrong))

    problems = []
    for name, kind in kinds.items():
        if kind.startswith("float") and getattr(cfg, name) is not None and not math.isfinite(getattr(cfg, name)):
            problems.append(f"{name} must be a finite number, got {getattr(cfg, name)}")
    if problems:  # the range checks below would only repeat these
        raise ValueError("bad settings: " + "; ".join(problems))
    for name in ("vocab_size", "n_layer", "n_head", "n_embd", "n_positions", "block_size", "batch_size",
                 "grad_accum", "max_steps", "eval_every", "checkpoint_every", "sample_tokens"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("n_kv_head", "intermediate_size"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            problems.append(f"{name} must be >= 1 (or unset), got {getattr(cfg, name)}")
    if cfg.arch not in ARCHES:
        problems.append(f"arch must be one of {list(ARCHES)}, got {cfg.arch!r}")
    if cfg.parallel not in PARALLEL:
        problems.append(f"parallel must be one of {list(PARALLEL)}, got {cfg.parallel!r}")
    if problems:  # the contradictions below divide by some of these
        raise ValueError("bad settings: " + "; ".join(problems))
    if cfg.n_embd % cfg.n_head:
        problems.append(f"n_embd ({cfg.n_embd}) must be divisible by n_head ({cfg.n_head})")
    if cfg.arch != "llama":
        given = [f"{n}={getattr(cfg, n)!r}" for n in LLAMA_ONLY if getattr(cfg, n) is not None]
        if given:
            problems.append(f"{', '.join(given)} apply only to arch='llama' (arch is {cfg.arch!r}): leave them unset")
    else:
        if cfg.n_kv_head is not None and cfg.n_head % cfg.n_kv_head:
            problems.append(f"n_head ({cfg.n_head}) must be divisible by n_kv_head ({cfg.n_kv_head}): each "
                            "key/value head serves the same number of query heads")
        if cfg.n_embd % cfg.n_head == 0 and (cfg.n_embd // cfg.n_head) % 2:
            problems.append(f"the head size n_embd / n_head ({cfg.n_embd // cfg.n_head}) must be even: rotary "
                            "embeddings turn pairs of dimensions")
        if cfg.rope_theta is not None and cfg.rope_theta <= 0:
            problems.append(f"rope_theta must be > 0 (or unset: {DEFAULT_ROPE_THETA}), got {cfg.rope_theta}")
    if cfg.block_size > cfg.n_positions:
        problems.append(f"block_size ({cfg.block_size}) must not exceed n_positions ({cfg.n_positions}): "
                        + ("the model has no position embedding beyond that" if cfg.arch == "gpt2" else
                           "the model's max_position_embeddings, which generation keeps to"))
    if cfg.block_size < 2:
        problems.append(f"block_size must be >= 2 (one token predicts the next), got {cfg.block_size}")
    repeats = {n: getattr(cfg, n) for n in ("repeat_fraction", "repeat_text_fraction")}
    problems += [f"{n} must be in [0, 1], got {f}" for n, f in repeats.items() if not 0.0 <= f <= 1.0]
    if not any(p.startswith("repeat_") for p in problems):
        if sum(repeats.values()) > 1.0:
            problems.append(f"repeat_fraction + repeat_text_fraction must be <= 1, got {' + '.join(map(str, repeats.values()))}")
        elif sum(repeats.values()) > 0 and cfg.block_size < 2 * D.REPEAT_MIN_LEN:
            problems.append(f"repeat_fraction / repeat_text_fraction need block_size >= {2 * D.REPEAT_MIN_LEN} (a span "
                            f"of {D.REPEAT_MIN_LEN} tokens and its repeat), got {cfg.block_size}")
    per_step = cfg.grad_accum * world_size
    if cfg.batch_size % per_step:
        problems.append(f"batch_size ({cfg.batch_size}) must be divisible by grad_accum ({cfg.grad_accum}) "
                        f"x processes ({world_size}) = {per_step}")
    if not 0 < cfg.eval_fraction < 1:
        problems.append(f"eval_fraction must be in (0, 1), got {cfg.eval_fraction}")
    if cfg.tokenizer == "bpe" and cfg.vocab_size < 257:
        problems.append(f"vocab_size must be >= 257 (256 bytes + <|endoftext|>) for tokenizer 'bpe', got {cfg.vocab_size}")
    if not 0 <= cfg.dropout < 1:
        problems.append(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.lr <= 0 or cfg.min_lr < 0 or cfg.min_lr > cfg.lr:
        problems.append(f"need 0 <= min_lr <= lr and lr > 0, got lr={cfg.lr}, min_lr={cfg.min_lr}")
    if cfg.warmup_steps is not None and not 0 <= cfg.warmup_steps <= cfg.max_steps:
        problems.append(f"warmup_steps ({cfg.warmup_steps}) must be in [0, max_steps={cfg.max_steps}] "
                        "(or unset: min(100, max_steps // 10))")
    if cfg.weight_decay < 0 or cfg.grad_clip < 0:
        problems.append(f"weight_decay and grad_clip must be >= 0, got {cfg.weight_decay}, {cfg.grad_clip}")
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        problems.append(f"beta1, beta2 must be in [0, 1), got {cfg.beta1}, {cfg.beta2}")
    if not 0 <= cfg.seed < 2**32:
        problems.append(f"seed must be in [0, 2**32), got {cfg.seed}")
    if cfg.eval_blocks < 0:
        problems.append(f"eval_blocks must be >= 0 (0 = all), got {cfg.eval_blocks}")
    if cfg.sample_temperature <= 0 or cfg.sample_top_k < 0:
        problems.append(f"sample_temperature must be > 0 and sample_top_k >= 0, got "
                        f"{cfg.sample_temperature}, {cfg.sample_top_k}")
    if cfg.device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", cfg.device):
        problems.append(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {cfg.device!r}")
    if not cfg.out.strip():
        problems.append("out must name a folder, got an empty string")
    if any(not p.strip() for p in cfg.corpus):  # Path("") is the current folder: never what was meant
        problems.append(f"corpus paths must not be empty strings, got {cfg.corpus!r} ([] = the Shakespeare plays)")
    if cfg.tokenizer == "" or (cfg.init_from is not None and cfg.init_from == ""):
        problems.append("tokenizer and init_from must not be empty strings (init_from: leave it unset)")
    if problems:
        raise ValueError("bad settings: " + "; ".join(problems))

    D.corpus_files(cfg.corpus)  # FileNotFoundError naming a path that is neither file nor folder
    if cfg.tokenizer not in ("bpe", "gpt2"):
        missing = [n for n in ("vocab.json", "merges.txt") if not (Path(cfg.tokenizer) / n).is_file()]
        if missing:
            raise FileNotFoundError(f"tokenizer must be 'bpe', 'gpt2' or a folder with vocab.json and merges.txt; "
                                    f"{cfg.tokenizer} has no {' or '.join(missing)}")
    if cfg.init_from is not None and not (Path(cfg.init_from) / "config.json").is_file():
        raise FileNotFoundError(f"init_from must be a model folder with config.json; {cfg.init_from} has none")
    if cfg.init_from is not None:
        model_type = _folder_model_type(Path(cfg.init_from), "init_from")
        if model_type is not None and MODEL_TYPES.get(model_type) != cfg.arch:
            loads = [t for t, a in MODEL_TYPES.items() if a == cfg.arch]
            raise ValueError(f"init_from {cfg.init_from} holds a model of model_type {model_type!r}; arch "
                             f"{cfg.arch!r} starts from model_type {' or '.join(map(repr, loads))}")
    out = Path(cfg.out)
    nearest = next((p for p in (out, *out.parents) if p.exists()), None)  # the folder is made inside it
    if nearest is not None and not nearest.is_dir():
        raise NotADirectoryError(f"out must be a folder, but {nearest if nearest == out else f'{nearest} (in {out})'} "
                                 "is a file")


# ---------------------------------------------------------------------------------------
# The pieces of the loop
# ---------------------------------------------------------------------------------------


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay the matrices of linear layers; not biases, layer norms or
    embeddings (nor the head tied to the token embedding: it *is* that parameter)."""
    embeddings = {id(m.weight) for m in model.modules() if type(m).__name__ == "Embedding" or isinstance(m, torch.nn.Embedding)}
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # each parameter once, even when tied
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def decayed_parameter_names(model: torch.nn.Module) -> list[str]:
    """The names of the parameters param_groups decays (for tests and the guide)."""
    decayed = {id(p) for p in param_groups(model, 1.0)[0]["params"]}
    return [n for n, p in model.named_parameters() if id(p) in decayed]


class WarmupCosine:
    """The learning-rate multiplier of step s (0-based): linear warmup from 1/warmup to 1 over
    ``warmup`` steps, then a half cosine from 1 down to min_ratio at the last step."""

    def __init__(self, warmup: int, max_steps: int, min_ratio: float):
        self.warmup, self.max_steps, self.min_ratio = warmup, max_steps, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        span = max(1, self.max_steps - 1 - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate optimizer step ``step`` (0-based) uses: cfg.lr x WarmupCosine."""
    cfg = resolve_config(cfg)
    return cfg.lr * WarmupCosine(cfg.warmup_steps, cfg.max_steps, cfg.min_lr / cfg.lr)(step)


def select_eval_blocks(blocks: Tensor, n: int) -> Tensor:
    """n blocks spread evenly over the held-out stream (every play contributes), or all for n=0."""
    if n == 0 or n >= len(blocks):
        return blocks
    return blocks[torch.linspace(0, len(blocks) - 1, n).round().long()]


@torch.no_grad()
def evaluate(model: torch.nn.Module, blocks: Tensor, batch_size: int, device: torch.device | str = "cpu",
             amp: bool = False) -> float:
    """Mean next-token loss (nats per predicted token) over ``blocks`` (M, T) long, in batches
    of ``batch_size`` blocks; the last batch may be shorter. Every block has T - 1 targets,
    so the per-batch means weighted by their number of blocks give the mean over all tokens.

    Raises TypeError / ValueError for blocks that are not a non-empty (M, T >= 2) integer
    tensor, or a batch_size that is not an int >= 1."""
    if not isinstance(blocks, torch.Tensor) or blocks.dim() != 2 or blocks.dtype not in (torch.long, torch.int):
        raise TypeError(f"blocks must be a (M, T) long tensor of token ids, got "
                        f"{type(blocks).__name__} {getattr(blocks, 'shape', '')} {getattr(blocks, 'dtype', '')}")
    if len(blocks) == 0 or blocks.shape[1] < 2:
        raise ValueError(f"blocks must hold at least one block of >= 2 tokens, got shape {tuple(blocks.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    was_training = model.training
    model.eval()
    device = torch.device(device)
    total, n = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = blocks[i : i + batch_size].to(device)
        with _autocast(device, amp):
            loss = model(x, labels=x).loss
        total += float(loss) * len(x)
        n += len(x)
    model.train(was_training)
    return total / n


def step_batch(blocks: Tensor, step: int, cfg: TrainConfig, vocab_size: int
               ) -> tuple[Tensor, Tensor | None, int | None]:
    """(inputs, labels, number of targets) of one optimizer step's global batch ``blocks``
    (batch_size, T) long: the blocks themselves (labels and count None: the inputs are the
    labels, every micro-batch counts the same (T - 1) targets per row) or, with
    cfg.repeat_fraction or cfg.repeat_text_fraction > 0, data.with_repeats' rows for
    (cfg.seed, step), whose labels are -100 on random tokens' first copy; then the count is the
    global batch's number of labels that are not -100 at positions 1..T-1 (each model shifts
    labels by one), passed to the model as num_items_in_batch (transformers' Trainer does the
    same, trainer.py) so that every counted token weighs the same in the step's gradient,
    however the batch is split into micro-batches and processes. Raises what with_repeats raises."""
    if cfg.repeat_fraction == 0 and cfg.repeat_text_fraction == 0:
        return blocks, None, None
    inputs, labels = D.with_repeats(blocks, step, vocab_size, cfg.repeat_fraction, cfg.repeat_text_fraction, cfg.seed)
    return inputs, labels, int((labels[:, 1:] != -100).sum())


@torch.no_grad()
def repeat_losses(model: torch.nn.Module, probe: Tensor, span: int, device: torch.device | str = "cpu",
                  amp: bool = False, batch_size: int | None = None) -> tuple[float, float]:
    """(loss on the first copy, loss on the second copy) of the repeated random spans of ``probe``
    (rows, T), from data.repeat_probe: mean next-token loss (nats) over targets 1..L-1 and over
    L+1..2L-1, with L = span. A model that has learnt induction predicts the second copy from
    the first, so the gap between the two is what the training log shows forming. The first
    copy's first target (position 0 has none) and the second copy's first token (predicted
    from the end of the first copy, which says nothing about where the span starts again)
    are left out.

    The probe runs batch_size rows at a time (None: all at once), so that it needs no more
    memory than a training micro-batch; the result does not depend on it beyond float rounding.

    Raises TypeError for a probe that is not a 2-D integer tensor or a non-integer span or
    batch_size, ValueError for span < 2, batch_size < 1 or a probe shorter than 2 * span tokens."""
    probe = D._check_blocks(probe)
    span = check_int("span", span, minimum=2)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    if probe.shape[1] < 2 * span:
        raise ValueError(f"probe must be >= 2 * span = {2 * span} tokens long (two copies of the span), got "
                         f"shape {tuple(probe.shape)}")
    was_training = model.training
    model.eval()
    device = torch.device(device)
    rows = []
    try:
        for chunk in probe.split(batch_size or len(probe)):  # at most batch_size rows of logits at once
            x = chunk.to(device)
            with _autocast(device, amp):
                logits = model(x).logits[:, : 2 * span - 1].float()  # (b, 2L-1, V): the targets used
            rows.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1 : 2 * span],
                                                          reduction="none"))  # (b, 2L-1)
    finally:
        model.train(was_training)
    nll = torch.cat(rows)  # (rows, 2L-1): target t + 1 at index t
    return float(nll[:, : span - 1].mean()), float(nll[:, span : 2 * span - 1].mean())


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @classmethod
    def from_env(cls) -> "_Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def from_rank0(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; gloo and NCCL)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather_to_rank0(self, obj: Any) -> list[Any] | None:
        """[rank 0's obj, rank 1's, ...] on rank 0, None elsewhere."""
        if self.world_size == 1:
            return [obj]
        boxes = [None] * self.world_size if self.rank == 0 else None
        torch.distributed.gather_object(obj, boxes, dst=0)
        return boxes


def _device(cfg: TrainConfig, dist: _Dist) -> torch.device:
    if cfg.device == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        name = cfg.device
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device is {cfg.device!r} but torch sees no GPU")
        return torch.device("cuda", dist.local_rank if dist.world_size > 1 else torch.device(name).index or 0)
    return torch.device("cpu")


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a log.jsonl, in order. A last line cut short (the process was killed
    while appending it) is left out; a damaged line anywhere else raises ValueError naming it."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    records = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i == len(lines):  # no newline after it: an append that never finished
                break
            raise ValueError(f"{path}, line {i}: not a JSON record: {line[:80]!r}") from None
    return records


def _kept_log(path: Path, resume_at: dict[str, int], warn: bool = False) -> bytes:
    """The part of log.jsonl a run resumed at ``resume_at`` keeps: its first resume_at["bytes"]
    bytes (what was written up to the checkpoint), or, if the file is shorter (it was cut or
    replaced) or ends in zero bytes (unwritten when the machine went down), its whole lines
    before that, with a warning. Raises ValueError naming a kept line that is not a JSON record:
    the run would fail at its first evaluation otherwise."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < resume_at["bytes"]:
        if warn:
            warnings.warn(f"{path} has {len(data)} bytes, less than the {resume_at['bytes']} it had at the "
                          "checkpoint: its earlier records are lost; the run goes on from the checkpoint", stacklevel=3)
        data = data[: data.rfind(b"\n") + 1]  # whole lines only
    else:
        data = data[: resume_at["bytes"]]
    zeros = data.find(b"\x00")
    if zeros >= 0 and not data[zeros:].strip(b"\x00\n"):
        # Zeros from here on: appends the file system had not written when the machine went
        # down (the log is not synced, the checkpoint is); what is lost is said, not refused.
        data = data[: data.rfind(b"\n", 0, zeros) + 1]
        kept = data.count(b"\n")
        if warn:
            warnings.warn(f"{path} ends in zero bytes (a crash before they were written): its records after "
                          f"the first {kept} are lost; the run goes on from the checkpoint", stacklevel=3)
    for i, line in enumerate(data.split(b"\n"), start=1):
        try:
            if line.strip():
                json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path}, line {i}, before the checkpoint's position, is not a JSON record: "
                             f"{line[:80]!r}; move the log aside to resume without its earlier records") from None
    return data


class _Log:
    """log.jsonl, append-only: one JSON line per record, each appended by a single write.

    A checkpoint records ``position()`` (bytes and records written so far); a resumed run cuts
    the log back to that position, so the records of the steps it redoes appear once and a
    line torn by a kill after the checkpoint is gone."""

    def __init__(self, path: Path, resume_at: dict[str, int] | None):
        self.path = path
        if resume_at is None:
            write_text_atomic(path, "")
            self.n_records = 0
            return
        data = _kept_log(path, resume_at, warn=True)
        write_bytes_atomic(path, data)
        self.n_records = data.count(b"\n")

    def position(self) -> dict[str, int]:
        return {"bytes": self.path.stat().st_size, "records": self.n_records}

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("ab") as f:
            f.write((json.dumps(record) + "\n").encode())
        self.n_records += 1

    def records(self) -> list[dict[str, Any]]:
        return read_log(self.path)


class RunFolderInUse(FileExistsError):
    """Another process is running ``mlab-tfs train`` into the same output folder."""


class RunLock:
    """An exclusive ``fcntl.flock`` on ``<out>/run.lock``, held for the whole run (rank 0).

    A second run into the same folder is refused at once with RunFolderInUse naming the
    folder and the holder's pid. The operating system drops the lock when the holder's
    process ends, however it ends (exit, exception, kill -9), so there is no stale lock to
    clean up. The file itself stays; only the lock on it counts. (No-op without fcntl.)"""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / "run.lock"
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # not a POSIX system: no lock
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderInUse(f"{self.folder} is in use by another mlab-tfs train run (pid {holder}); "
                                 "wait for it to end or choose another --out") from None
        # The holder's pid, for the message above; written in place (the lock is on this inode).
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


_WARNED_PLOT = False
# The probe's curves: random tokens cannot be predicted the first time, only copied the second.
REPEAT_CURVES = ("random span, 1st copy", "random span, 2nd copy")


def loss_curves(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """The curves of loss.png from log records, each a list of (step, loss in nats): "train"
    (every step's "loss"), "held-out" (every evaluation's "eval_loss") and, where evaluations
    logged the repeat probe, REPEAT_CURVES (their "repeat_loss_first" / "repeat_loss_second").
    Curves without a point are left out: a run with block_size < 2 * REPEAT_MIN_LEN has no probe."""
    curves = {
        "train": [(r["step"], r["loss"]) for r in records if "loss" in r],
        "held-out": [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r],
        REPEAT_CURVES[0]: [(r["step"], r["repeat_loss_first"]) for r in records if "repeat_loss_first" in r],
        REPEAT_CURVES[1]: [(r["step"], r["repeat_loss_second"]) for r in records if "repeat_loss_second" in r],
    }
    return {label: points for label, points in curves.items() if points}


def plot_losses(log_path: Path, png: Path) -> bool:
    """Training loss per step, held-out loss per evaluation and the repeat probe's two copies
    (loss_curves), from log.jsonl. Needs matplotlib
    (imported here, so the loop runs without it); returns whether a PNG was written."""
    global _WARNED_PLOT
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if not _WARNED_PLOT:
            warnings.warn("matplotlib is not installed, so no loss.png: pip install matplotlib", stacklevel=2)
            _WARNED_PLOT = True
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    styles = {"train": dict(lw=0.8), "held-out": dict(marker="o", ms=3),
              REPEAT_CURVES[0]: dict(marker="s", ms=3, lw=0.8, ls="--"), REPEAT_CURVES[1]: dict(marker="s", ms=3, lw=0.8)}
    for label, points in loss_curves(read_log(log_path)).items():
        ax.plot(*zip(*points), label=label, **styles[label])
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def _sample(model, tokenizer, cfg: TrainConfig, device: torch.device, amp: bool) -> str:
    from mlab_tfs.sampling import generate

    prompt = tokenizer.encode(cfg.sample_prompt) or [D.eot_id(tokenizer)]
    longest = max_positions(model.config)
    prompt = prompt[-(longest - 1):]
    n_new = min(cfg.sample_tokens, longest - len(prompt))
    # Its own generator: sampling must not move the training RNG, or a resumed run would differ.
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    was_training = model.training
    model.eval()
    with torch.no_grad(), _autocast(device, amp):
        ids = generate(model, torch.tensor([prompt], device=device), max_new_tokens=n_new, do_sample=True,
                       temperature=cfg.sample_temperature, top_k=cfg.sample_top_k, generator=g)
    model.train(was_training)
    return tokenizer.decode(ids[0].tolist())


def export_model(model, tokenizer, folder: Path) -> None:
    """config.json + fp16 model.safetensors (our GPT2LMHeadModel or LlamaForCausalLM, and
    transformers, load both) + the tokenizer's vocab.json and merges.txt. ``model`` is a whole
    (unsharded) model: under FSDP, the copy _Sharded.whole_model gathers."""
    half = type(model)(model.config)  # a fresh copy, so the training model stays fp32
    half.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    half.to(torch.float16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def prepare_data(cfg: TrainConfig, tokenizer=None):
    """(tokenizer, training blocks (N, T), held-out blocks (M, T)), with clear errors when the
    corpus cannot fill one batch or leaves no held-out block."""
    train_docs, eval_docs = D.read_corpus(cfg.corpus, cfg.eval_fraction)
    if tokenizer is None:
        tokenizer = D.build_tokenizer(cfg.tokenizer, train_docs, cfg.vocab_size)
    train_ids = D.encode_documents(tokenizer, train_docs)
    eval_ids = D.encode_documents(tokenizer, eval_docs)
    train_blocks = D.to_blocks(train_ids, cfg.block_size)
    eval_blocks = D.to_blocks(eval_ids, cfg.block_size)
    if len(train_blocks) < cfg.batch_size:
        raise ValueError(
            f"the corpus is too small for one batch: its training text is {len(train_ids)} tokens, "
            f"{len(train_blocks)} blocks of block_size={cfg.block_size}, and one batch needs "
            f"batch_size={cfg.batch_size} blocks ({cfg.batch_size * cfg.block_size} tokens); "
            "give more text or lower batch_size / block_size")
    if len(eval_blocks) < 1:
        raise ValueError(
            f"the held-out text ({len(eval_ids)} tokens, the last eval_fraction={cfg.eval_fraction} of each "
            f"document) does not fill one block of block_size={cfg.block_size}; raise eval_fraction or give more text")
    return tokenizer, train_blocks, eval_blocks


def model_config(cfg: TrainConfig, vocab_size: int, eot: int):
    """The model config a run of ``cfg`` builds: GPT2Config for arch "gpt2"; for "llama" a
    LlamaConfig with n_layer -> num_hidden_layers, n_head -> num_attention_heads, n_kv_head ->
    num_key_value_heads, n_embd -> hidden_size, n_positions -> max_position_embeddings,
    intermediate_size, rope_theta, dropout -> attention_dropout (the only dropout a Llama has),
    and the head tied to the token embedding (as GPT-2's)."""
    if cfg.arch == "gpt2":
        from mlab_tfs.gpt2 import GPT2Config

        return GPT2Config(
            vocab_size=vocab_size, n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
            n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
            bos_token_id=eot, eos_token_id=eot, attn_implementation="sdpa",  # PyTorch's fused attention kernels
        )
    from mlab_tfs.llama import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.n_embd, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head or cfg.n_head,
        intermediate_size=cfg.intermediate_size or llama_intermediate_size(cfg.n_embd),
        max_position_embeddings=cfg.n_positions, attention_dropout=cfg.dropout, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta or DEFAULT_ROPE_THETA},
        bos_token_id=eot, eos_token_id=eot,
    )


def _set_dropout(model, cfg: TrainConfig) -> None:
    """A loaded model trains with this run's dropout (config and modules)."""
    mc = model.config
    if cfg.arch == "gpt2":
        mc.resid_pdrop = mc.embd_pdrop = mc.attn_pdrop = cfg.dropout
    else:
        mc.attention_dropout = cfg.dropout
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = cfg.dropout


def _build_model(cfg: TrainConfig, tokenizer, device: torch.device):
    cls = model_class(cfg.arch)
    eot = D.eot_id(tokenizer)
    if cfg.init_from:
        model = cls.from_pretrained(cfg.init_from, dtype=torch.float32)
        mc = model.config
        if mc.vocab_size != tokenizer.vocab_size or max_positions(mc) < cfg.block_size:
            raise CheckpointError(
                f"init_from {cfg.init_from} is a model with vocab_size={mc.vocab_size}, "
                f"{max_positions(mc)} positions; this run's tokenizer has {tokenizer.vocab_size} tokens and "
                f"block_size={cfg.block_size}")
        _set_dropout(model, cfg)
        model.set_attn_implementation("sdpa")
    else:
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        model = cls(model_config(cfg, tokenizer.vocab_size, eot))
    return model.to(device).train()


CHECKPOINT_KIND = "mlab_tfs.training checkpoint"


def resume_changes(old: dict[str, Any], new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """The settings a resume changes, {field: (checkpoint's value, new value)}, all of them in
    RESUME_MAY_CHANGE. ``old`` is the config a checkpoint recorded (resolved), ``new`` the
    resolved config of the resumed run.

    Raises CheckpointError naming every other setting that differs, as ``field: old -> new``."""
    fixed = [f"{k}: {old.get(k)!r} -> {getattr(new, k)!r}" for k in RESUME_FIXED if old.get(k) != getattr(new, k)]
    if fixed:
        raise CheckpointError("the checkpoint is from a run with other settings, which --resume cannot change: "
                              + "; ".join(fixed) + " (only " + ", ".join(RESUME_MAY_CHANGE) + " may change)")
    return {k: (old.get(k), getattr(new, k)) for k in RESUME_MAY_CHANGE if old.get(k) != getattr(new, k)}


def _read_checkpoint(out: Path) -> dict[str, Any]:
    state_path = out / "checkpoint" / "state.pt"
    if not state_path.is_file():
        if (out / "checkpoint.pt").is_file():
            raise CheckpointError(f"{out / 'checkpoint.pt'} was written by an older mlab-tfs train, whose "
                                  "checkpoints this version does not resume; start the run again in another --out")
        raise FileNotFoundError(f"--resume: no checkpoint in {out} (no {state_path})")
    state = _load_checkpoint_file(state_path)
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{state_path} is not a checkpoint of mlab-tfs train")
    return state


def _load_checkpoint_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file of any kind: one clear message (torch's first line)
        first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}: {first}); the checkpoint is "
                              "damaged: start the run again in another --out") from e


def _read_rng(out: Path, rank: int, step: int) -> dict[str, Any]:
    """Rank ``rank``'s random state in the checkpoint of ``out``, which must be from ``step``."""
    path = out / "checkpoint" / f"rng-{rank}.pt"
    if not path.is_file():
        raise CheckpointError(f"the checkpoint in {out} lacks {path.name} (the random state of rank {rank}); "
                              "it is damaged: start the run again in another --out")
    rng = _load_checkpoint_file(path)
    if not isinstance(rng, dict) or not isinstance(rng.get("state"), dict) or rng.get("step") != step:
        found = rng.get("step") if isinstance(rng, dict) else type(rng).__name__
        raise CheckpointError(f"{path} is from step {found}, the checkpoint from step {step}")
    return rng["state"]


def _resumed_config(cfg: TrainConfig, state: dict[str, Any]) -> tuple[TrainConfig, dict[str, tuple[Any, Any]]]:
    """(the resolved config the resumed run uses, what it changes); raises what resume_changes raises."""
    old = state["config"]
    if cfg.warmup_steps is None:  # unset: the warmup the run started with, not one scaled to a new max_steps
        cfg = replace(cfg, warmup_steps=old["warmup_steps"])
    cfg = resolve_config(cfg)
    changes = resume_changes(old, cfg)
    if cfg.max_steps < state["step"]:
        raise ValueError(f"max_steps={cfg.max_steps}, but the checkpoint in {cfg.out} is at step {state['step']}: "
                         "a resumed run can only go on")
    return cfg, changes


def _open_run(out: Path, cfg: TrainConfig, resume: bool, world_size: int) -> dict[str, Any] | None:
    """Rank 0's checks of the output folder: the checkpoint to resume, or None for a new run."""
    if not resume:
        for old in (out / "checkpoint", out / "checkpoint.pt"):
            if old.exists():
                raise FileExistsError(f"{out} already holds a run's checkpoint ({old.name}): pass --resume to "
                                      "continue it, or choose another --out")
        return None
    state = _read_checkpoint(out)
    _resumed_config(cfg, state)
    if state["world_size"] != world_size:
        raise CheckpointError(f"the checkpoint in {out} was written by {state['world_size']} processes; "
                              f"resume it with the same number (now {world_size})")
    for rank in range(world_size):
        _read_rng(out, rank, state["step"])
    _kept_log(out / "log.jsonl", state["log_position"])
    return state


def _picklable(e: BaseException) -> bool:
    import pickle

    try:
        return type(pickle.loads(pickle.dumps(e))) is type(e)
    except Exception:
        return False


def train(cfg: TrainConfig, resume: bool = False, command: str | None = None,
          stop_after: int | None = None) -> dict[str, Any]:
    """Run (or, with resume, continue) a training run; returns a summary (see recipe.json)
    plus "losses", the training loss of every step (nats per token).

    Before any work, raises: what check_config raises for a bad setting; RunFolderInUse if
    another run holds ``cfg.out``; FileExistsError for a new run into a folder that holds a
    checkpoint. With resume: FileNotFoundError without a checkpoint; CheckpointError for a
    checkpoint of another run (every differing setting named, ``field: old -> new``; only
    RESUME_MAY_CHANGE may change, and recipe.json records those changes under "resumed") or
    of another number of processes.

    stop_after=s ends the run right after step s as if the process had been killed there
    (no final checkpoint, no export): for testing that resuming loses nothing.
    """
    if not isinstance(resume, bool):
        raise TypeError(f"resume must be a bool, got {type(resume).__name__} {resume!r}")
    if command is not None and not isinstance(command, str):
        raise TypeError(f"command must be a str or None, got {type(command).__name__}")
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be None or an int >= 1, got {stop_after!r}")
    dist = _Dist.from_env()
    check_config(cfg, dist.world_size)  # before anything slow
    device = _device(cfg, dist)
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    out = Path(cfg.out)
    if resume and not out.is_dir():  # refused before the lock would create the folder
        raise FileNotFoundError(f"--resume: no checkpoint in {out} (no {out / 'checkpoint' / 'state.pt'})")

    if dist.world_size > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's object collectives use the current device
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        dist.initialized_here = True
    lock = RunLock(out)
    try:
        # Rank 0 takes the folder and checks the checkpoint; every rank learns its verdict, so
        # that no process trains alone or waits for one that gave up.
        verdict = None
        if dist.rank == 0:
            try:
                lock.acquire()
                state = _open_run(out, cfg, resume, dist.world_size)
            except Exception as e:
                verdict = e
        shared = dist.from_rank0(verdict if verdict is None or _picklable(verdict)
                                 else RuntimeError(f"{type(verdict).__name__}: {verdict}"))
        if verdict is not None:
            raise verdict
        if shared is not None:
            raise shared
        if dist.rank != 0:
            state = _read_checkpoint(out) if resume else None
        cfg, changes = _resumed_config(cfg, state) if state is not None else (resolve_config(cfg), {})
        return _train(cfg, dist, device, amp, use_compile, out, state, changes, command, stop_after)
    finally:
        lock.release()
        if dist.initialized_here:
            _end_process_group()


def model_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a model: every element of every nn.ModuleList (GPT-2's
    transformer.h, Llama's model.layers)."""
    return [block for m in model.modules() if isinstance(m, torch.nn.ModuleList) for block in m]


def shard_model(model: torch.nn.Module, compile_blocks: bool = False, **fsdp_options) -> torch.nn.Module:
    """Apply FSDP2 (``torch.distributed.fsdp.fully_shard``) to ``model`` in place, as the loop's
    parallel = "fsdp" does: each element of every nn.ModuleList (GPT-2's transformer.h, Llama's
    model.layers) is its own unit, the root the rest (embeddings, final norm, the tied head, in
    one unit, so a tied weight stays one parameter). Needs an initialised process group; returns
    the model (now an FSDPModule). ``fsdp_options`` go to every fully_shard call (e.g. mp_policy).
    compile_blocks: torch.compile each block in place first, so that FSDP's gathers and frees
    (hooks around each block) stay outside the compiled code; the model is then not compiled
    as a whole (the order torchtitan uses)."""
    from torch.distributed.fsdp import fully_shard

    for block in model_blocks(model):
        if compile_blocks:
            block.compile()
        fully_shard(block, **fsdp_options)
    fully_shard(model, **fsdp_options)
    return model


class _Sharded:
    """FSDP2 over the run's processes (``parallel = "fsdp"``, world size > 1): every decoder
    block is its own ``fully_shard`` unit (its parameters are gathered just before it runs and
    freed after), and the root holds the rest (embeddings, final norm, the tied head). Each
    process keeps 1/world of every parameter, gradient and AdamW moment; gradients are
    reduce-scattered (averaged) on the last micro-batch of a step, as DDP all-reduces them.
    Source: PyTorch's ``torch.distributed.fsdp.fully_shard`` (FSDP2; Zhao et al. 2023,
    "PyTorch FSDP" for the design).

    Checkpoints, evaluation, samples and the export use whole tensors: ``whole_state`` gathers
    them (a collective: every process calls it) onto rank 0's CPU, and rank 0 runs a plain copy
    of the model (``whole_model``), so what is evaluated and saved is what DDP saves."""

    def __init__(self, model: torch.nn.Module, main: bool, device: torch.device, compile_blocks: bool):
        self.cls, self.config, self.main, self.device = type(model), model.config, main, device
        self.model = shard_model(model, compile_blocks=compile_blocks)
        self._copy = None

    def sync(self, on: bool) -> contextlib.AbstractContextManager:
        self.model.set_requires_gradient_sync(on)
        return contextlib.nullcontext()

    def _options(self, **kw):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, **kw)

    def whole_state(self) -> dict[str, Tensor]:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(self.model, options=self._options(cpu_offload=True))  # {} off rank 0

    def optimizer_state(self, optimizer) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.model, optimizer, options=self._options(cpu_offload=True))

    def load_optimizer_state(self, optimizer, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(self.model, optimizer, state, options=self._options())

    def whole_model(self) -> torch.nn.Module | None:
        """Rank 0: a plain model holding the gathered weights (made once, refreshed each call);
        None on the other ranks. Every rank must call it."""
        state = self.whole_state()
        if not self.main:
            return None
        if self._copy is None:
            self._copy = self.cls(self.config).to(self.device)
        self._copy.load_state_dict(state)
        return self._copy


def _whole_norm(norm: Tensor) -> Tensor:
    """clip_grad_norm_'s total norm as a plain tensor (a DTensor under FSDP)."""
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def _end_process_group() -> None:
    """Destroy the process group while the interpreter is whole, and so that its gloo threads
    are joined here: the DDP wrapper (freed only by the garbage collector: it has reference
    cycles) goes first, so the group's last reference is the registry's, whose release lets
    the threads finish. Left to the interpreter's exit, a gloo thread still releasing a
    collective's Python-owned tensors is stopped inside a destructor: SIGABRT."""
    gc.collect()
    torch.distributed.destroy_process_group()


def _train(cfg, dist, device, amp, use_compile, out, state, changes, command, stop_after) -> dict[str, Any]:
    from tqdm import tqdm

    from mlab_tfs.tokenizers import ByteLevelBPETokenizer

    started = time.time()
    main = dist.rank == 0
    tok_dir = out / "tokenizer"
    # The tokenizer is made once (rank 0), written, and every process reads the same files.
    if main and state is None:
        tokenizer, train_blocks, eval_blocks = prepare_data(cfg)
        with atomic_folder(tok_dir) as staging:
            tokenizer.save_pretrained(staging)
    dist.barrier()
    if state is not None or not main:
        tokenizer, train_blocks, eval_blocks = prepare_data(cfg, ByteLevelBPETokenizer.from_pretrained(tok_dir))
    fingerprint = D.tokenizer_fingerprint(tokenizer)
    order = D.BlockOrder(len(train_blocks), cfg.batch_size, cfg.seed)
    start = state["step"] if state is not None else 0
    if state is not None:
        if state["tokenizer"] != fingerprint:
            raise CheckpointError(f"{tok_dir} is not the tokenizer the checkpoint was trained with")
        epoch, index = order.position(start)
        if state["train_blocks"] != len(train_blocks) or state["data_position"] != {"epoch": epoch, "index": index}:
            raise CheckpointError(f"the corpus changed since the checkpoint: it had {state['train_blocks']} training "
                                  f"blocks, now {len(train_blocks)}, so step {start} would not read the same data")

    model = _build_model(cfg, tokenizer, device)
    if state is not None:
        model.load_state_dict(state["model"])  # whole tensors, before any sharding
    # FSDP2 only over several processes; one process trains the plain model either way.
    sharded = (_Sharded(model, main, device, compile_blocks=use_compile)
               if cfg.parallel == "fsdp" and dist.world_size > 1 else None)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                  fused=device.type == "cuda")
    schedule = WarmupCosine(cfg.warmup_steps, cfg.max_steps, cfg.min_lr / cfg.lr)
    resumed = list(state["resumed"]) if state is not None else []
    if state is not None:
        if sharded is not None:
            sharded.load_optimizer_state(optimizer, state["optimizer"])
        else:
            optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(_read_rng(out, dist.rank, start), device)
        resumed.append({"step": start, "changed": {k: list(v) for k, v in changes.items()}})
    else:
        torch.manual_seed(cfg.seed + dist.rank)  # dropout differs between processes, as their data does
        random.seed(cfg.seed + dist.rank)

    runner = torch.compile(model) if use_compile and sharded is None else model  # (sharded: per block)
    if dist.world_size > 1 and sharded is None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        runner = DDP(runner, device_ids=[device.index] if device.type == "cuda" else None)

    def micro_batch(sync: bool):
        """The context of one micro-batch's backward: gradients are averaged over processes only when sync."""
        if sharded is not None:
            return sharded.sync(sync)
        return contextlib.nullcontext() if sync or dist.world_size == 1 else runner.no_sync()

    def whole_model() -> torch.nn.Module | None:
        """The model with whole weights on rank 0 (None elsewhere); every rank calls it."""
        if sharded is not None:
            return sharded.whole_model()
        return model if main else None

    micro = cfg.batch_size // (cfg.grad_accum * dist.world_size)
    eval_set = select_eval_blocks(eval_blocks, cfg.eval_blocks)
    # Too short a block to repeat a span of REPEAT_MIN_LEN: no induction probe is logged.
    # 16 rows whatever the micro-batch (run micro rows at a time): the same probe over any split of the batch.
    probe, span = (D.repeat_probe(tokenizer.vocab_size, cfg.block_size, rows=16, seed=cfg.seed)
                   if cfg.block_size >= 2 * D.REPEAT_MIN_LEN else (None, 0))
    tokens_per_step = cfg.batch_size * cfg.block_size
    log = _Log(out / "log.jsonl", resume_at=state["log_position"] if state is not None else None) if main else None
    n_params = sum(p.numel() for p in model.parameters())
    if main:
        print(f"{n_params / 1e6:.2f}M parameters, vocabulary {tokenizer.vocab_size}, {len(train_blocks)} training "
              f"blocks and {len(eval_blocks)} held-out blocks of {cfg.block_size} tokens; device {device}, "
              f"{dist.world_size} process(es), amp={amp}, compile={use_compile}", file=sys.stderr)

    def checkpoint(step: int) -> None:
        # One folder, one writer: the state, every rank's random state and the log position
        # of the same step appear together or not at all.
        rng = dist.gather_to_rank0(_rng_state(device))
        if sharded is not None:  # gathers: collectives, every rank
            weights, moments = sharded.whole_state(), sharded.optimizer_state(optimizer)
        else:
            weights, moments = model.state_dict(), optimizer.state_dict()
        failed = None
        if main:
            epoch, index = order.position(step)
            try:
                with atomic_folder(out / "checkpoint", drop=["rng-*.pt"]) as staging:
                    torch.save({
                        "kind": CHECKPOINT_KIND, "step": step, "config": asdict(cfg), "world_size": dist.world_size,
                        "tokenizer": fingerprint, "train_blocks": len(train_blocks),
                        "data_position": {"epoch": epoch, "index": index}, "log_position": log.position(),
                        "resumed": resumed, "model": weights, "optimizer": moments,
                    }, staging / "state.pt")
                    for r, rng_state in enumerate(rng):
                        torch.save({"step": step, "rank": r, "state": rng_state}, staging / f"rng-{r}.pt")
            except Exception as e:
                failed = e
        # Every rank stops if the save failed, rather than wait for rank 0 at the next step.
        verdict = dist.from_rank0(None if failed is None else f"{type(failed).__name__}: {failed}")
        if failed is not None:
            raise failed
        if verdict is not None:
            raise OSError(f"rank 0 could not write the step-{step} checkpoint ({verdict}); the previous one is whole")

    last_eval = None
    bar = tqdm(total=cfg.max_steps, initial=start, disable=not (cfg.progress and main), dynamic_ncols=True)
    t_last = time.time()
    for step in range(start, cfg.max_steps):
        lr = cfg.lr * schedule(step)
        for group in optimizer.param_groups:  # the schedule is a function of the step alone
            group["lr"] = lr
        inputs, labels, n_targets = step_batch(train_blocks[order.batch(step)], step, cfg, tokenizer.vocab_size)
        loss_sum = torch.zeros((), device=device)
        for a in range(cfg.grad_accum):
            first = (a * dist.world_size + dist.rank) * micro
            x = inputs[first : first + micro].to(device, non_blocking=True)
            y = x if labels is None else labels[first : first + micro].to(device, non_blocking=True)
            # Gradients are averaged over processes only on the last micro-batch of the step.
            with micro_batch(a == cfg.grad_accum - 1):
                with _autocast(device, amp):
                    if n_targets is None:
                        loss = runner(x, labels=y).loss / cfg.grad_accum
                    else:  # micro-batches count different numbers of targets: weigh each token alike
                        # A 0-d tensor: a Python number makes torch.compile trace a second graph when it changes.
                        loss = runner(x, labels=y, num_items_in_batch=torch.tensor(n_targets / dist.world_size,
                                                                                  device=device)).loss
                loss.backward()
            loss_sum += loss.detach()
        if dist.world_size > 1:  # the logged loss is the global batch's, as one process would see it
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= dist.world_size
        grad_norm = _whole_norm(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                               cfg.grad_clip if cfg.grad_clip > 0 else math.inf))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1

        loss_value = float(loss_sum)
        now = time.time()
        tok_s = tokens_per_step / max(now - t_last, 1e-9)
        t_last = now
        if main:
            log.write({"step": done, "loss": loss_value, "lr": lr, "grad_norm": float(grad_norm),
                       "tokens": done * tokens_per_step, "tokens_per_s": tok_s})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", tok_s=f"{tok_s:,.0f}")
        if done % cfg.eval_every == 0 or done == cfg.max_steps:
            whole = whole_model()
            if main:
                last_eval = evaluate(whole, eval_set, micro, device, amp)
                text = _sample(whole, tokenizer, cfg, device, amp)
                record = {"step": done, "eval_loss": last_eval}
                if probe is not None:
                    record["repeat_loss_first"], record["repeat_loss_second"] = repeat_losses(whole, probe, span,
                                                                                              device, amp, micro)
                log.write({**record, "sample": text})
                bar.write(f"step {done}: held-out loss {last_eval:.4f}\n{text}\n")
                plot_losses(out / "log.jsonl", out / "loss.png")
            t_last = time.time()  # evaluation time is not training throughput
        if done % cfg.checkpoint_every == 0 and done < cfg.max_steps:
            checkpoint(done)
            t_last = time.time()
        if stop_after is not None and done >= stop_after and done < cfg.max_steps:
            bar.close()
            return {"interrupted_at": done, "losses": [r["loss"] for r in log.records() if "loss" in r] if main else None}
    bar.close()
    checkpoint(cfg.max_steps)
    whole = whole_model()

    summary: dict[str, Any] = {}
    if main:
        folder = out / "model"
        with atomic_folder(folder) as staging:  # weights, tokenizer and recipe: one unit
            export_model(whole, tokenizer, staging)
            # The number a later check can reproduce: fp16 weights as stored, fp32 on the CPU.
            stored = model_class(cfg.arch).from_pretrained(staging, dtype=torch.float32)
            final = evaluate(stored, eval_set.cpu(), micro, "cpu", amp=False)
            summary = {
                "command": command, "config": asdict(cfg), "final_eval_loss": final,
                "final_eval_loss_note": "mean next-token loss (nats) on the held-out blocks below, fp16 weights as "
                                        "stored, evaluated in fp32 on the CPU",
                "eval_blocks": len(eval_set), "eval_tokens": len(eval_set) * cfg.block_size,
                "last_training_eval_loss": last_eval, "steps": cfg.max_steps,
                "tokens": cfg.max_steps * tokens_per_step, "resumed": resumed,
                "wall_time_s": round(time.time() - started, 1), "parameters": n_params,
                "vocab_size": tokenizer.vocab_size, "tokenizer_fingerprint": fingerprint,
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "processes": dist.world_size, "parallel": cfg.parallel if dist.world_size > 1 else None,
                "arch": cfg.arch, "amp_bf16": amp, "compile": use_compile, "torch": torch.__version__,
            }
            if probe is not None:
                summary["repeat_loss_first"], summary["repeat_loss_second"] = repeat_losses(stored, probe, span,
                                                                                            batch_size=micro)
                summary["repeat_loss_note"] = (f"next-token loss (nats) on the first and the second copy of {len(probe)} "
                                               f"spans of {span} random tokens repeated (data.repeat_probe, seed "
                                               f"{cfg.seed}), weights and device as final_eval_loss")
            write_text_atomic(staging / "recipe.json", json.dumps(summary, indent=2) + "\n")
        summary["losses"] = [r["loss"] for r in log.records() if "loss" in r]
        plot_losses(out / "log.jsonl", out / "loss.png")
        print(f"held-out loss {final:.4f} (fp16 weights, fp32 on CPU); model in {folder}", file=sys.stderr)
    return summary
