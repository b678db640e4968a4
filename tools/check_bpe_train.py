#!/usr/bin/env python3
"""Checks a tokenizer written by `dsv3 tokenizer-train` against HF `tokenizers`.

    python3 tools/check_bpe_train.py --tokenizer DIR --text FILE [--dsv3 build/dsv3]

Loads DIR/tokenizer.json with HF tokenizers, encodes samples of FILE (every
line, blank-line paragraphs, 4 KB chunks, and a few hand-written strings with
special tokens, CJK, digits, emoji, odd whitespace) with HF and with
`dsv3 tokenize --tokenizer DIR --jsonl`, and reports any difference in ids or
in decoded text. Also checks that the special tokens have ids 0..7.
Verification only: nothing in the build or the test suite runs it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜fim▁hole｜>",
            "<｜fim▁begin｜>", "<｜fim▁end｜>", "<｜User｜>", "<｜Assistant｜>"]

EXTRA = [
    "", " ", "  \n\n\t x", "Hello, world! 12345 67", "日本語のテキストと漢字、カタカナ。",
    "emoji 😀👍🏽 and café naïve", "a<｜end▁of▁sentence｜>b<｜User｜>hi<｜Assistant｜>",
    "<｜fim▁begin｜>def f(x):<｜fim▁hole｜>\n    return y<｜fim▁end｜>    y = x", "x = [1,2,3]\r\n\r\n\ty",
    "The LORD said unto Moses, 'Go!' -- (Exodus 3:10) ...", "\u00a0\u2003nbsp\u3000space", "Ωμέγα русский العربية",
]


def samples(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    out = [line for line in text.split("\n") if line]
    out += [p for p in text.split("\n\n") if p.strip()]
    out += [text[i:i + 4096] for i in range(0, len(text), 4096)]
    return out + EXTRA


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--dsv3", default="build/dsv3")
    ap.add_argument("--max", type=int, default=200000, help="at most this many samples")
    a = ap.parse_args()
    from tokenizers import Tokenizer
    hf = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    bad = 0
    for i, s in enumerate(SPECIALS):
        if hf.token_to_id(s) != i:
            print(f"special {s!r}: HF id {hf.token_to_id(s)}, expected {i}")
            bad += 1
    texts = samples(a.text)[:a.max]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
        jl = f.name
    try:
        r = subprocess.run([a.dsv3, "tokenize", "--tokenizer", a.tokenizer, "--jsonl", jl],
                           capture_output=True, text=True, check=True)
    finally:
        os.unlink(jl)
    # dsv3 skips blank JSONL lines only; every sample is one non-blank line, so outputs align
    ours = [json.loads(l) for l in r.stdout.splitlines()]
    if len(ours) != len(texts):
        print(f"dsv3 returned {len(ours)} results for {len(texts)} samples")
        return 1
    hf_enc = hf.encode_batch(texts, add_special_tokens=False)
    ntok = 0
    for t, o, h in zip(texts, ours, hf_enc):
        ntok += len(o)
        if o != h.ids:
            bad += 1
            if bad <= 5:
                print(f"MISMATCH on {t[:80]!r}\n  dsv3 {o[:20]}\n  HF   {h.ids[:20]}")
        elif hf.decode(h.ids, skip_special_tokens=False) != t:
            bad += 1
            if bad <= 5:
                print(f"HF decode differs on {t[:80]!r}")
    print(f"{len(texts)} samples, {ntok} tokens, vocab {hf.get_vocab_size()}: "
          f"{'all identical' if not bad else f'{bad} mismatches'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
