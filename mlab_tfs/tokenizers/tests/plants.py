"""Each catalogued mistake written into the solution as a learner would write it (see
mlab_tfs/testing/mistakes.py): the planting test checks that ``mlab-tfs check`` names it."""

PLANTS = {
    # 1. clean_text
    "control_chars_kept": [('if ch == "\\0" or ch == "\\ufffd" or is_control(ch):', 'if ch == "\\0" or ch == "\\ufffd":')],
    "replacement_char_kept": [('if ch == "\\0" or ch == "\\ufffd" or is_control(ch):',
                               'if is_control(ch) and ch not in "\\0\\ufffd":')],
    "whitespace_dropped_as_control": [('if ch == "\\0" or ch == "\\ufffd" or is_control(ch):',
                                       'if ch == "\\0" or ch == "\\ufffd" or is_control(ch) or ch in "\\t\\n\\r":')],
    "cjk_not_spaced": [("    if cjk and is_cjk_char(ch):", "    if False:")],
    # 2. basic_tokenize
    "accents_not_stripped": [("            text = nfd(text).translate(_NO_ACCENTS)", "            text = nfd(text)")],
    "punctuation_not_split": [("    return text.translate(_SPLIT_PUNCT).split()", "    return text.split()")],
    "str_lower_final_sigma": [("        text = lower(text)", "        text = text.lower()")],
    "strip_accents_flag_ignored": [("    if lowercase if strip_accents is None else strip_accents:", "    if lowercase:")],
    "chinese_chars_flag_ignored": [("    text = clean_text(text, tokenize_chinese_chars)\n    if lowercase if",
                                    "    text = clean_text(text)\n    if lowercase if")],
    # 3. wordpiece
    "no_hash_prefix": [('piece = word[start:end] if start == 0 else "##" + word[start:end]', "piece = word[start:end]")],
    "unknown_piece_not_whole_word": [
        ("        else:\n            return [unk_token]\n        pieces.append(piece)\n        start = end",
         "        else:\n            pieces.append(unk_token)\n            start += 1\n            continue\n"
         "        pieces.append(piece)\n        start = end")],
    "shortest_match_first": [("        for end in range(len(word), start, -1):", "        for end in range(start + 1, len(word) + 1):")],
    "long_word_not_unknown": [("    if len(word) > max_chars:\n        return [unk_token]  # checked first", "    if False:\n        return [unk_token]  # checked first")],
    "max_chars_off_by_one": [("    if len(word) > max_chars:", "    if len(word) >= max_chars:")],
    # 4. bert_encode
    "no_special_tokens": [("            return [self.cls_token_id, *ids, self.sep_token_id] if add_special_tokens else ids",
                           "            return ids")],
    "special_tokens_split": [("            if i % 2:\n                tokens.append(part)\n                continue\n            options",
                              "            options"),
                             ("for i, part in enumerate(self._special_re.split(text)):", "for i, part in enumerate([text]):")],
    "hash_pieces_not_glued": [('            if i and token.startswith("##"):\n                out.append(token[2:])\n            elif',
                               "            if")],
    "punctuation_not_glued": [('            elif i and token not in (".", ",", "!", "?"):', "            elif i:")],
    # 5. bert_batch
    "both_halved_when_one_cut_is_enough": [("    short, long = sorted((n_first, n_second))\n",
                                            "    return min(n_first, max_tokens // 2), min(n_second, max_tokens - max_tokens // 2)\n"
                                            "    short, long = sorted((n_first, n_second))\n")],
    "odd_token_to_the_shorter": [("short, long = max_tokens // 2, max_tokens // 2 + max_tokens % 2",
                                  "short, long = max_tokens // 2 + max_tokens % 2, max_tokens // 2")],
    "first_text_cut_not_the_longer": [("    short, long = sorted((n_first, n_second))\n",
                                       "    if n_second <= max_tokens:\n        return max_tokens - n_second, n_second\n"
                                       "    short, long = sorted((n_first, n_second))\n")],
    "only_first_and_only_second_swapped": [('    if strategy == "only_first":\n        if n_second',
                                            '    if strategy == "only_second":\n        if n_second'),
                                           ('    if strategy == "only_second":\n        if n_first',
                                            '    if strategy == "only_first":\n        if n_first')],
    "zero_budget_keeps_a_text": [("    if max_tokens == 0:  # tokenizers' truncate_encodings, whatever the strategy: nothing of either text\n"
                                  "        return 0, None if n_second is None else 0\n", "")],
    "no_error_when_the_other_text_fills_it": [
        ('            raise ValueError(f"cannot truncate only the first sequence: the second alone has {n_second} tokens")',
         "            return 0, max_tokens")],
    "pair_row_without_final_sep": [("return row if token_ids_1 is None else row + [*token_ids_1, self.sep_token_id]",
                                    "return row if token_ids_1 is None else row + list(token_ids_1)")],
    "two_seps_between_the_texts": [("return row if token_ids_1 is None else row + [*token_ids_1, self.sep_token_id]",
                                    "return row if token_ids_1 is None else row + [self.sep_token_id, *token_ids_1, self.sep_token_id]")],
    "cls_and_sep_swapped": [("        row = [self.cls_token_id, *token_ids_0, self.sep_token_id]\n"
                             "        return row if token_ids_1 is None else row + [*token_ids_1, self.sep_token_id]",
                             "        row = [self.sep_token_id, *token_ids_0, self.cls_token_id]\n"
                             "        return row if token_ids_1 is None else row + [*token_ids_1, self.cls_token_id]")],
    "token_types_all_zero": [("first + [1] * (len(token_ids_1) + 1)", "first + [0] * (len(token_ids_1) + 1)")],
    "final_sep_type_zero": [("first + [1] * (len(token_ids_1) + 1)", "first + [1] * len(token_ids_1) + [0]")],
    "first_sep_type_one": [("        first = [0] * (len(token_ids_0) + 2)", "        first = [0] * (len(token_ids_0) + 1) + [1]")],
    # 6. bytes_to_unicode
    "unprintable_bytes_offset_by_value": [("            table[b] = chr(256 + extra)", "            table[b] = chr(256 + b)")],
    "only_ascii_printable": [('    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]',
                              '    printable = list(range(ord("!"), ord("~") + 1))')],
    "extra_chars_out_of_byte_order": [("    table, extra = {}, 0\n    for b in range(256):",
                                       "    table, extra = {}, 0\n    for b in reversed(range(256)):")],
    "soft_hyphen_printable": [('*range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]', '*range(ord("¡"), ord("ÿ") + 1)]')],
    # 7. pretokenize
    "spaces_not_attached": [("_GPT2_RE = regex.compile(GPT2_PATTERN)",
                             "_GPT2_RE = regex.compile(r\"'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}+|[^\\s\\p{L}\\p{N}]+|\\s+\")")],
    "no_whitespace_lookahead": [("_GPT2_RE = regex.compile(GPT2_PATTERN)",
                                 "_GPT2_RE = regex.compile(r\"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+\")")],
    "contractions_not_split": [("_GPT2_RE = regex.compile(GPT2_PATTERN)",
                                "_GPT2_RE = regex.compile(GPT2_PATTERN.replace(\"'s|'t|'re|'ve|'m|'ll|'d|\", \"\"))")],
    "ascii_letters_only": [("_GPT2_RE = regex.compile(GPT2_PATTERN)",
                            "_GPT2_RE = regex.compile(GPT2_PATTERN.replace(r\"\\p{L}\", \"a-zA-Z\").replace(r\"\\p{N}\", \"0-9\")"
                            ".replace(r\"?a-zA-Z+\", r\"?[a-zA-Z]+\").replace(r\"?0-9+\", r\"?[0-9]+\"))")],
    # 9. bpe_merge (written as the simple loop learners write, each with its mistake)
    "merge_by_frequency": [("    n = len(symbols)\n    if n < 2:",
                            "    sym = list(symbols)\n    while len(sym) > 1:\n"
                            "        pairs = [p for p in zip(sym, sym[1:]) if p in ranks]\n"
                            "        if not pairs:\n            break\n"
                            "        best = max(pairs, key=pairs.count)  # the most frequent pair\n"
                            "        out, i = [], 0\n"
                            "        while i < len(sym):\n"
                            "            if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:\n"
                            "                out.append(sym[i] + sym[i + 1])\n                i += 2\n"
                            "            else:\n                out.append(sym[i])\n                i += 1\n"
                            "        sym = out\n    return sym\n    n = len(symbols)\n    if n < 2:")],
    "leftmost_pair_first": [("    n = len(symbols)\n    if n < 2:",
                             "    sym = list(symbols)\n    i = 0\n"
                             "    while i + 1 < len(sym):\n"
                             "        if (sym[i], sym[i + 1]) in ranks:\n"
                             "            sym[i:i + 2] = [sym[i] + sym[i + 1]]\n            i = max(i - 1, 0)\n"
                             "        else:\n            i += 1\n"
                             "    return sym\n    n = len(symbols)\n    if n < 2:")],
    "overlaps_merged_from_the_right": [("heap.append((rank, i, sym[i], sym[i + 1]))", "heap.append((rank, -i, sym[i], sym[i + 1]))"),
                                       ("        rank, i, left, right = heapq.heappop(heap)\n",
                                        "        rank, i, left, right = heapq.heappop(heap)\n        i = abs(i)\n"),
                                       ("heapq.heappush(heap, (r, p, sym[p], sym[i]))", "heapq.heappush(heap, (r, -p, sym[p], sym[i]))"),
                                       ("heapq.heappush(heap, (r, i, sym[i], sym[nxt[i]]))", "heapq.heappush(heap, (r, -i, sym[i], sym[nxt[i]]))")],
    # 10. bpe_encode
    "no_pretokenize": [("        for word in pretokenize(text):\n            tokens += self._word_tokens(word)",
                        "        for word in [text] if text else []:\n            tokens += self._word_tokens(word)")],
    "decode_tokens_separately": [('return b"".join([table[i] for i in ids]).decode("utf-8", "replace")',
                                  'return "".join(table[i].decode("utf-8", "replace") for i in ids)')],
    "special_tokens_always_matched": [("        allowed = self._allowed(allowed_special)\n",
                                       "        allowed = self._allowed(allowed_special) or set(self.special_tokens)\n")],
    # 8. bpe_train
    "ties_broken_differently": [("heap = [(-c, pair) for pair, c in pair_counts.items()]",
                                 "heap = [(-c, (-pair[0], -pair[1])) for pair, c in pair_counts.items()]"),
                                ("            neg, pair = heapq.heappop(heap)\n",
                                 "            neg, pair = heapq.heappop(heap)\n            pair = (-pair[0], -pair[1])\n"),
                                ("heapq.heappush(heap, (-pair_counts[p], p))", "heapq.heappush(heap, (-pair_counts[p], (-p[0], -p[1])))")],
    "word_counts_ignored": [("        freqs = list(counts.values())", "        freqs = [1] * len(counts)")],
    "pairs_counted_across_words": [('            counts.update(pretokenize(require_text(f"texts[{i}]", text)))',
                                    '            counts.update([require_text(f"texts[{i}]", text)])')],
}
