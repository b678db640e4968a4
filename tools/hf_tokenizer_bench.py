#!/usr/bin/env python3
"""Single-thread throughput of HuggingFace `tokenizers` on a JSONL corpus.

Used by build/bench_tokenizer (bench/bench_tokenizer.c), which writes the
corpus and compares the numbers and the ids with the C tokenizer.

    python3 tools/hf_tokenizer_bench.py --tokenizer DIR --corpus FILE.jsonl

FILE.jsonl holds one {"text": ...} per line. Prints one JSON line:
    {"version", "load_ms", "bytes", "tokens", "checksum",
     "encode_mbps", "batch_mbps"}
encode_mbps: a loop of Tokenizer.encode(); batch_mbps: encode_batch_fast
(or encode_batch) with rayon limited to one thread. Exit status 3 (and a
message on stderr) when the `tokenizers` package is not installed.
"""
import argparse
import json
import os
import sys
import time

# one thread for the Rust side; must be set before tokenizers is imported
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def checksum(ids_lists):
    # same formula as bench_tokenizer.c: h = h * 1000003 + id + 1 (mod 2^64)
    h = 0
    mask = (1 << 64) - 1
    for ids in ids_lists:
        for i in ids:
            h = (h * 1000003 + i + 1) & mask
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json")
    ap.add_argument("--corpus", required=True, help="JSONL file of {\"text\": ...}")
    ap.add_argument("--repeat", type=int, default=2, help="timed passes (best is reported)")
    a = ap.parse_args()
    try:
        import tokenizers
        from tokenizers import Tokenizer
    except ImportError:
        print("tokenizers is not installed (pip install tokenizers)", file=sys.stderr)
        return 3

    with open(a.corpus, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)

    t0 = time.perf_counter()
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    load_ms = (time.perf_counter() - t0) * 1e3

    best_loop = 0.0
    ids = None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        out = [tok.encode(t, add_special_tokens=False).ids for t in texts]
        dt = time.perf_counter() - t0
        best_loop = max(best_loop, nbytes / dt / 1e6)
        ids = out

    batch = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
    best_batch = 0.0
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        encs = batch(texts, add_special_tokens=False)
        dt = time.perf_counter() - t0
        best_batch = max(best_batch, nbytes / dt / 1e6)
    batch_ids = [e.ids for e in encs]
    if batch_ids != ids:
        print("warning: encode and encode_batch disagree", file=sys.stderr)

    print(json.dumps({
        "version": tokenizers.__version__,
        "load_ms": round(load_ms, 2),
        "bytes": nbytes,
        "tokens": sum(len(x) for x in ids),
        "checksum": str(checksum(ids)),
        "encode_mbps": round(best_loop, 3),
        "batch_mbps": round(best_batch, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
