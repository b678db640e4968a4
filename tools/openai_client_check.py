#!/usr/bin/env python3
"""Talks to a running `dsv3 serve` with the official `openai` Python client:
models list, chat (non-streaming and streaming, same greedy text), completions,
and a 400 for a bad field. Exit 0 = all good, 1 = a check failed, 77 = skipped
(openai not installed). Verification only: not on the product path.

usage: tools/openai_client_check.py BASE_URL   (e.g. http://127.0.0.1:8080/v1)"""
import sys

try:
    import openai
    from openai import OpenAI
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)


def main():
    c = OpenAI(base_url=sys.argv[1], api_key="unused")
    models = [m.id for m in c.models.list()]
    assert models, "no models listed"
    model = models[0]
    msgs = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Blessed are"}]
    r = c.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0)
    text = r.choices[0].message.content
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant", r
    assert r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage
    chunks = list(c.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0, stream=True))
    streamed = "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
    assert streamed == text, (streamed, text)
    assert any(ch.choices and ch.choices[0].finish_reason for ch in chunks), "no finish_reason chunk"
    cr = c.completions.create(model=model, prompt="And the LORD said", max_tokens=8, temperature=0, seed=1)
    assert cr.object == "text_completion" and cr.choices[0].text, cr
    try:
        c.chat.completions.create(model=model, messages=msgs, max_tokens=-5)
        raise AssertionError("max_tokens=-5 was accepted")
    except openai.BadRequestError as e:
        assert "max_tokens" in str(e), e
    print(f"openai {openai.__version__}: models {models}; chat {text!r}; stream identical; completion ok; 400 ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}")
        sys.exit(1)
