"""Retrieval latency, start-up time and peak memory, at the real KB size and at 10,000 entries.

The synthetic entries are recombinations of the real ones' words, so the vocabulary, the
BM25 postings and the shortlists look like a much larger knowledge base on the same topic.

Usage:
  .venv/bin/python benchmarks/bench_retrieval.py                 # real KB
  .venv/bin/python benchmarks/bench_retrieval.py --grow 10000    # KB grown to 10,000 entries
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import time
from pathlib import Path

from knowledge.labelled import load_questions, training_examples
from knowledge.loader import load_knowledge_base
from knowledge.model import Entry
from knowledge.normalize import Analyzer
from knowledge.retriever import Retriever

ROOT = Path(__file__).resolve().parent.parent


def grow(entries: list[Entry], analyzer: Analyzer, size: int) -> list[Entry]:
    """Pad the KB with plausible entries built from the real entries' content words."""
    rnd = random.Random(3)
    words = sorted({t for e in entries for text in e.texts for t in analyzer.analyse(text).terms
                    if len(t) > 1})
    out = list(entries)
    template = entries[0]
    while len(out) < size:
        def sentence() -> str:
            return "の".join(rnd.sample(words, rnd.randint(2, 5))) + "について教えてください"
        out.append(template.model_copy(update={
            "id": f"synthetic-{len(out)}", "question": sentence(),
            "phrasings": [sentence() for _ in range(4)],
            "answer": "。".join(rnd.sample(words, 8)) + "。",
        }))
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main(size: int | None, rounds: int) -> None:
    started = time.perf_counter()
    analyzer = Analyzer()
    entries = load_knowledge_base(ROOT / "knowledge" / "entries")
    examples = training_examples()
    retriever = Retriever(entries, analyzer, examples=examples)
    startup = time.perf_counter() - started
    if size:
        grown_at = time.perf_counter()
        retriever = Retriever(grow(entries, analyzer, size), analyzer, examples=examples)
        print(f"grown index built in {time.perf_counter() - grown_at:.2f} s")
    queries = [q.text for q in load_questions("all")]
    queries += ["あ" * 5000, "🙂" * 300, "SELECT * FROM entries; --", ""]
    for q in queries[:50]:
        retriever.decide(q)  # warm caches the way a running bot has them
    timings = []
    for _ in range(rounds):
        for q in queries:
            t0 = time.perf_counter()
            retriever.decide(q)
            timings.append((time.perf_counter() - t0) * 1000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"entries: {len(retriever.entries)}  queries: {len(timings)}  "
          f"start-up (analyser + real KB + index): {startup:.2f} s")
    print(f"latency ms: p50 {statistics.median(timings):.2f}  p99 {pct(timings, 0.99):.2f}  "
          f"max {max(timings):.2f}  peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grow", type=int, default=None, help="grow the KB to N entries")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.grow, args.rounds)
