"""What each catalogued mistake computes: the tests compare a learner's output with these, so
that a failure names the mistake by what the code does, however it is written.

Each function is the solution with one mistake, written the way learners write it; names
follow the catalogue (mlab_tfs/tokenizers/mistakes.py).
"""

from __future__ import annotations

from collections import Counter

import unicodedata

import regex

from mlab_tfs.tokenizers import solution as S
from mlab_tfs.tokenizers.chars import is_accent, is_cjk_char, is_control, is_punctuation, is_whitespace, lower, nfd

# ----------------------------------------------------------------------------- 1. clean_text


def clean_text(text: str, tokenize_chinese_chars: bool = True, *, drop_control: bool = True,
               drop_replacement: bool = True, space_cjk: bool = True, only_cc: bool = False,
               whitespace_controls: bool = False) -> str:
    out = []
    for ch in text:
        if whitespace_controls and unicodedata.category(ch) == "Cc":  # \t, \n, \r are Cc too
            continue
        if drop_replacement and ch in ("\0", "\ufffd"):
            continue
        if drop_control and is_control(ch) and ch not in ("\0", "\ufffd"):
            if not only_cc or unicodedata.category(ch) == "Cc":
                continue
        if is_whitespace(ch):
            out.append(" ")
        elif space_cjk and tokenize_chinese_chars and is_cjk_char(ch):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    return "".join(out)


CLEAN_TEXT = {
    # none dropped, or only Cc (format characters, Cf, kept)
    "control_chars_kept": [lambda t, c=True: clean_text(t, c, drop_control=False),
                           lambda t, c=True: clean_text(t, c, only_cc=True)],
    "replacement_char_kept": lambda t, c=True: clean_text(t, c, drop_replacement=False),
    "cjk_not_spaced": lambda t, c=True: clean_text(t, c, space_cjk=False),
    "whitespace_dropped_as_control": lambda t, c=True: clean_text(t, c, whitespace_controls=True),
}

# ----------------------------------------------------------------------------- 2. basic_tokenize


def basic_tokenize(text, lowercase=True, strip_accents=None, tokenize_chinese_chars=True, *, strip=True,
                   split_punct=True, lower_fn=lower, follow_flag=True, pass_cjk=True, nfd_only=False):
    text = S.clean_text(text, tokenize_chinese_chars if pass_cjk else True)
    do_strip = (lowercase if strip_accents is None else strip_accents) if follow_flag else lowercase
    if strip and do_strip:
        text = "".join(c for c in nfd(text) if nfd_only or not is_accent(c))
    if lowercase:
        text = lower_fn(text)
    if split_punct:
        text = "".join(f" {c} " if is_punctuation(c) else c for c in text)
    return text.split()


BASIC_TOKENIZE = {
    # no stripping at all, or NFD without dropping the marks
    "accents_not_stripped": [lambda *a, **k: basic_tokenize(*a, **k, strip=False),
                             lambda *a, **k: basic_tokenize(*a, **k, nfd_only=True)],
    "punctuation_not_split": lambda *a, **k: basic_tokenize(*a, **k, split_punct=False),
    "str_lower_final_sigma": lambda *a, **k: basic_tokenize(*a, **k, lower_fn=str.lower),
    "strip_accents_flag_ignored": lambda *a, **k: basic_tokenize(*a, **k, follow_flag=False),
    "chinese_chars_flag_ignored": lambda *a, **k: basic_tokenize(*a, **k, pass_cjk=False),
}

# ----------------------------------------------------------------------------- 3. wordpiece


def wordpiece(word, vocab, unk_token="[UNK]", max_chars=100, *, lookup_prefix="##", out_prefix="##",
              longest=True, whole_unk=True, check_length=True, strict=True):
    if check_length and (len(word) > max_chars if strict else len(word) >= max_chars):
        return [unk_token]
    pieces, start = [], 0
    while start < len(word):
        ends = range(len(word), start, -1) if longest else range(start + 1, len(word) + 1)
        for end in ends:
            if (word[start:end] if start == 0 else lookup_prefix + word[start:end]) in vocab:
                pieces.append(word[start:end] if start == 0 else out_prefix + word[start:end])
                start = end
                break
        else:
            if whole_unk:
                return [unk_token]
            pieces.append(unk_token)
            start += 1
    return pieces


WORDPIECE = {
    # looked up without "##", or looked up with it and returned without it
    "no_hash_prefix": [lambda *a, **k: wordpiece(*a, **k, lookup_prefix="", out_prefix=""),
                       lambda *a, **k: wordpiece(*a, **k, out_prefix="")],
    "unknown_piece_not_whole_word": lambda *a, **k: wordpiece(*a, **k, whole_unk=False),
    "shortest_match_first": lambda *a, **k: wordpiece(*a, **k, longest=False),
    "long_word_not_unknown": lambda *a, **k: wordpiece(*a, **k, check_length=False),
    "max_chars_off_by_one": lambda *a, **k: wordpiece(*a, **k, strict=False),
}

# ----------------------------------------------------------------------------- 4. encode / decode


def encode(tokenizer, text, *, specials=True, split_specials=False):
    if split_specials:
        tokens = [p for w in S.basic_tokenize(text, tokenizer.do_lower_case, tokenizer.strip_accents,
                                             tokenizer.tokenize_chinese_chars)
                  for p in S.wordpiece(w, tokenizer.vocab, tokenizer.unk_token, tokenizer.max_input_chars_per_word)]
    else:
        tokens = S.WordPieceTokenizer.tokenize(tokenizer, text)
    ids = [tokenizer.vocab.get(t, tokenizer.unk_token_id) for t in tokens]
    return [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id] if specials else ids


BERT_ENCODE = {
    "no_special_tokens": lambda tok, text: encode(tok, text, specials=False),
    "special_tokens_split": lambda tok, text: encode(tok, text, split_specials=True),
}


def decode(tokenizer, ids, skip_special_tokens=False, *, glue_hash=True, glue_punct=True):
    tokens = [tokenizer.ids_to_tokens[i] for i in ids]
    if skip_special_tokens:
        tokens = [t for t in tokens if t not in tokenizer.special_tokens]
    out = []
    for i, t in enumerate(tokens):
        if i and glue_hash and t.startswith("##"):
            out.append(t[2:])
        elif i and not (glue_punct and t in (".", ",", "!", "?")):
            out.append(" " + t)
        else:
            out.append(t)
    return "".join(out)


BERT_DECODE = {
    "hash_pieces_not_glued": lambda *a: decode(*a, glue_hash=False),
    "punctuation_not_glued": lambda *a: decode(*a, glue_punct=False),
}

# ----------------------------------------------------------------------------- 5. batches


def _halves(a, b, m, strategy="longest_first"):  # both cut to half even when cutting the longer is enough
    if b is None or strategy != "longest_first" or a + b <= m:
        return S.truncate_pair(a, b, m, strategy)
    return min(a, m // 2), min(b, m - m // 2)


def _odd_to_the_shorter(a, b, m, strategy="longest_first"):
    kept = S.truncate_pair(a, b, m, strategy)
    both_cut = b is not None and kept[0] < a and kept[1] < b and kept[0] != kept[1]
    return kept[::-1] if both_cut else kept


def _first_cut_first(a, b, m, strategy="longest_first"):  # the first text cut, not the longer
    if b is None or strategy != "longest_first" or a + b <= m:
        return S.truncate_pair(a, b, m, strategy)
    kept = max(0, m - b)
    return kept, min(b, m - kept)


def _only_swapped(a, b, m, strategy="longest_first"):
    swap = {"only_first": "only_second", "only_second": "only_first"}
    return S.truncate_pair(a, b, m, strategy if b is None else swap.get(strategy, strategy))


def _zero_budget_ignored(a, b, m, strategy="longest_first"):  # nothing left, but one text kept whole
    if m == 0 and b is not None and strategy == "only_first":
        return 0, b
    return (a, None) if m == 0 and b is None else S.truncate_pair(a, b, m, strategy)


def _zero_budget_refused(a, b, m, strategy="longest_first"):  # only_*: "the other text fills max_tokens 0"
    if m == 0 and b is not None and strategy != "longest_first":
        raise ValueError("cannot truncate: the other text alone fills max_tokens")
    return S.truncate_pair(a, b, m, strategy)


def _no_error(a, b, m, strategy="longest_first"):  # only_* that cannot fit: keeps what it can, silently
    try:
        return S.truncate_pair(a, b, m, strategy)
    except ValueError:
        return (0, m) if strategy == "only_first" else (m, 0)


TRUNCATE = {
    "both_halved_when_one_cut_is_enough": _halves,
    "odd_token_to_the_shorter": _odd_to_the_shorter,
    "first_text_cut_not_the_longer": _first_cut_first,
    "only_first_and_only_second_swapped": _only_swapped,
    "zero_budget_keeps_a_text": [_zero_budget_ignored, _zero_budget_refused],
    "no_error_when_the_other_text_fills_it": _no_error,
}


def row(cls, sep, a, b=None, *, final_sep=True, seps_between=1, swapped=False):
    first, last = (sep, cls) if swapped else (cls, sep)
    out = [first, *a, last]
    if b is not None:
        out += [last] * (seps_between - 1) + [*b] + ([last] if final_sep else [])
    return out


ROWS = {
    "pair_row_without_final_sep": lambda cls, sep, a, b=None: row(cls, sep, a, b, final_sep=False),
    "two_seps_between_the_texts": lambda cls, sep, a, b=None: row(cls, sep, a, b, seps_between=2),
    "cls_and_sep_swapped": lambda cls, sep, a, b=None: row(cls, sep, a, b, swapped=True),
}


def types(a, b=None, *, pair_type=1, final_sep=1, first_sep=0, with_final=True):
    out = [0] * (len(a) + 1) + [first_sep]
    if b is not None:
        out += [pair_type] * len(b) + ([final_sep] if with_final else [])
    return out


TYPES = {
    "token_types_all_zero": lambda a, b=None: types(a, b, pair_type=0, final_sep=0),
    "final_sep_type_zero": lambda a, b=None: types(a, b, final_sep=0),
    "first_sep_type_one": lambda a, b=None: types(a, b, first_sep=1),
}

# ----------------------------------------------------------------------------- 6. bytes_to_unicode


def bytes_to_unicode(*, ascii_only=False, soft_hyphen=False, offset_by_byte=False, reverse=False):
    printable = [*range(ord("!"), ord("~") + 1)]
    if not ascii_only:
        printable += [*range(ord("¡"), ord("¬") + 1), *([0xAD] if soft_hyphen else []), *range(ord("®"), ord("ÿ") + 1)]
    table, n = {}, 0
    for b in reversed(range(256)) if reverse else range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + (b if offset_by_byte else n))
            n += 1
    return table


BYTES_TO_UNICODE = {
    "unprintable_bytes_offset_by_value": lambda: bytes_to_unicode(offset_by_byte=True),
    "only_ascii_printable": lambda: bytes_to_unicode(ascii_only=True),
    "soft_hyphen_printable": lambda: bytes_to_unicode(soft_hyphen=True),
    "extra_chars_out_of_byte_order": lambda: dict(sorted(bytes_to_unicode(reverse=True).items())),
}

# ----------------------------------------------------------------------------- 7. pretokenize

_CONTRACTIONS = r"'s|'t|'re|'ve|'m|'ll|'d"
PRETOKENIZE = {
    "spaces_not_attached": [r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
                            r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+|\s+"],
    "no_whitespace_lookahead": [r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+"],
    "contractions_not_split": [r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
                               r"\p{L}+(?:'\p{L}+)?| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"],
    "ascii_letters_only": [r"'s|'t|'re|'ve|'m|'ll|'d| ?[a-zA-Z]+| ?[0-9]+| ?[^\sa-zA-Z0-9]+|\s+(?!\S)|\s+"],
}
PRETOKENIZE = {k: [lambda text, p=p: regex.findall(p, text) for p in v] for k, v in PRETOKENIZE.items()}

# ----------------------------------------------------------------------------- 9. bpe_merge


def bpe_merge(symbols, ranks, *, choose="rank", right_first=False):
    """Repeatedly merge the chosen adjacent pair: every occurrence, left to right (right to left)."""
    sym = list(symbols)
    while len(sym) > 1:
        pairs = [(sym[i], sym[i + 1]) for i in range(len(sym) - 1)]
        ranked = [p for p in pairs if p in ranks]
        if not ranked:
            break
        if choose == "rank":
            best = min(ranked, key=lambda p: ranks[p])
        elif choose == "max_rank":  # the rank read as a count: larger is better
            best = max(ranked, key=lambda p: ranks[p])
        elif choose == "frequency":  # the pair most frequent in the word, leftmost among equals
            counts = Counter(ranked)
            best = max(ranked, key=lambda p: counts[p])
        else:  # "leftmost": the first ranked pair, whatever its rank
            best = ranked[0]
        sym = _merge(sym, best, right_first)
    return sym


def _merge(sym, pair, right_first):
    seq = sym[::-1] if right_first else sym
    a, b = pair[::-1] if right_first else pair
    out, i = [], 0
    while i < len(seq):
        if i < len(seq) - 1 and seq[i] == a and seq[i + 1] == b:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out[::-1] if right_first else out


BPE_MERGE = {
    "merge_by_frequency": [lambda s, r: bpe_merge(s, r, choose="frequency"),
                           lambda s, r: bpe_merge(s, r, choose="max_rank")],
    "leftmost_pair_first": lambda s, r: bpe_merge(s, r, choose="leftmost"),
    "overlaps_merged_from_the_right": lambda s, r: bpe_merge(s, r, right_first=True),
}

# ----------------------------------------------------------------------------- 10. encode / decode


def bpe_encode(tokenizer, text, *, words=True):
    pieces = S.pretokenize(text) if words else [text]
    table = S.bytes_to_unicode()
    ids = []
    for w in pieces:
        ids += [tokenizer.encoder.get(t, -1) for t in S.bpe_merge([table[b] for b in w.encode()], tokenizer.bpe_ranks)]
    return ids


def bpe_decode_each(tokenizer, ids, errors="replace"):
    """Each token's bytes decoded on their own, then joined."""
    back = {c: b for b, c in S.bytes_to_unicode().items()}
    special = {i: t for t, i in tokenizer.special_tokens.items()}
    return "".join(special[i] if i in special else bytes(back[c] for c in tokenizer.decoder[i]).decode("utf-8", errors)
                   for i in ids)


BPE_ENCODE = {
    "no_pretokenize": lambda tok, text: bpe_encode(tok, text, words=False),
}

# ----------------------------------------------------------------------------- 8. training


def train_merges(texts, n_merges, *, tie="smallest", weighted=True, words=True):
    """A naive trainer (recounting every step): the merges as pairs of byte strings."""
    counts = Counter()
    for t in texts:
        counts.update(S.pretokenize(t) if words else [t])
    seqs = {w: [bytes([b]) for b in w.encode()] for w in counts}
    ids = {bytes([b]): b for b in range(256)}
    merges = []
    for _ in range(n_merges):
        pairs, first_seen = Counter(), {}
        for w, seq in seqs.items():
            for p in zip(seq, seq[1:]):
                pairs[p] += counts[w] if weighted else 1
                first_seen.setdefault(p, len(first_seen))
        if not pairs:
            break
        top = max(pairs.values())
        tied = [p for p in pairs if pairs[p] == top]
        if tie == "smallest":
            best = min(tied, key=lambda p: (ids[p[0]], ids[p[1]]))
        elif tie == "largest":
            best = max(tied, key=lambda p: (ids[p[0]], ids[p[1]]))
        else:  # the first pair seen in the text
            best = min(tied, key=first_seen.__getitem__)
        merges.append(best)
        ids.setdefault(best[0] + best[1], len(ids))
        for w, seq in seqs.items():
            seqs[w] = _merge(seq, best, False)
    table = S.bytes_to_unicode()
    show = lambda b: "".join(table[x] for x in b)  # noqa: E731
    return [(show(a), show(b)) for a, b in merges]


BPE_TRAIN = {
    "ties_broken_differently": [lambda t, n: train_merges(t, n, tie="first"), lambda t, n: train_merges(t, n, tie="largest")],
    "word_counts_ignored": lambda t, n: train_merges(t, n, weighted=False),
    "pairs_counted_across_words": lambda t, n: train_merges(t, n, words=False),
}
