"""``mlab-tfs demo bert "a query"``: nearest Shakespeare speeches by MiniLM sentence embeddings."""

from __future__ import annotations

import argparse
import textwrap

from mlab_tfs.cli import demo_subparsers, number


def _run(args: argparse.Namespace) -> int:
    from mlab_tfs.cli import one_torch_thread

    one_torch_thread()
    from mlab_tfs.bert.demo import SentenceEmbedder, nearest, shakespeare_passages

    passages = shakespeare_passages()
    embedder = SentenceEmbedder()
    corpus = embedder.embed([text for _, text in passages])
    print(f"{len(passages)} speeches from {', '.join(sorted({p for p, _ in passages}))}, "
          f"embedded by mlab_tfs.bert.BertModel (all-MiniLM-L6-v2, mean pooling)\n")
    for query in args.queries:
        print(f"query: {query}")
        for rank, (i, score) in enumerate(nearest(embedder.embed([query])[0], corpus, args.k), start=1):
            play, text = passages[i]
            body = textwrap.shorten(text, width=100, placeholder=" ...")
            print(f"  {rank}. {score:.3f}  [{play}] {body}")
        print()
    return 0


def register(subparsers) -> None:
    parser = demo_subparsers(subparsers).add_parser(
        "bert", help="semantic search over Shakespeare with real MiniLM weights in our BERT")
    parser.add_argument("queries", nargs="+", metavar="QUERY", help="what to search for")
    parser.add_argument("-k", type=number(int, 1), default=5, help="how many passages to show per query (default: %(default)s)")
    parser.set_defaults(func=_run)
