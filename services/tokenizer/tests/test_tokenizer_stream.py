"""The streaming detokenizer against the one-shot decode, without gRPC."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tokenway_common import errors

from tokenway_tokenizer.core import StopMatcher, StreamOptions, Tokenizer
from tokenway_text.stream import DetokenizeStream, WindowDecoder

SAMPLES = ["Hello, world!", " héllo wörld", "日本語のテキスト", "emoji 🎉🚀 done", "a\nb\tc", "naïve café", "Ω≈ç√∫"]


def reference_cut(text: str, stops: list[str], include: bool) -> tuple[str, str | None]:
    """The one-shot answer: cut at the stop occurrence that ends first (ties: starts first)."""
    best = None
    for s in stops:
        i = text.find(s) if s else -1
        if i >= 0 and (best is None or (i + len(s), i) < best[:2]):
            best = (i + len(s), i, s)
    if best is None:
        return text, None
    return text[:best[0] if include else best[1]], best[2]


def run_stream(tok: Tokenizer, ids: list[int], cuts: list[int], **options) -> tuple[list, object]:
    stream = tok.open_stream(StreamOptions(**options))
    bounds = sorted({c % (len(ids) + 1) for c in cuts} | {0, len(ids)})
    chunks = [ids[a:b] for a, b in zip(bounds, bounds[1:])] or [[]]
    deltas = [stream.push(chunk, last=i == len(chunks) - 1) for i, chunk in enumerate(chunks)]
    return deltas, stream


@st.composite
def token_ids(draw, tok: Tokenizer):
    byte_tokens = [i for i, b in enumerate(tok._token_bytes) if len(b) == 1]
    high_bytes = [i for i in byte_tokens if tok._token_bytes[i][0] >= 0x80]
    parts = draw(st.lists(st.one_of(
        st.lists(st.sampled_from(high_bytes), min_size=1, max_size=6),          # lone / broken UTF-8
        st.lists(st.sampled_from(byte_tokens), min_size=1, max_size=4),
        st.lists(st.sampled_from(sorted(tok.special_ids)), min_size=1, max_size=2),
        st.lists(st.integers(0, tok.vocab_size - 1), min_size=1, max_size=6),
        st.sampled_from(SAMPLES).map(lambda s: tok.rust.encode(s, add_special_tokens=False).ids),
    ), max_size=8))
    return [i for p in parts for i in p]


def test_stream_equals_one_shot_decode(tok):
    @given(ids=token_ids(tok), cuts=st.lists(st.integers(0, 64), max_size=6), skip=st.booleans())
    def check(ids, cuts, skip):
        deltas, stream = run_stream(tok, ids, cuts, skip_special_tokens=skip)
        text = "".join(d.text for d in deltas)
        assert text == tok.rust.decode(ids, skip_special_tokens=skip)
        assert "".join(t for d in deltas for t in d.token_texts) == text
        assert sum(len(d.token_texts) for d in deltas) == len(ids) == deltas[-1].num_tokens
        # Hold-back is bounded: after every chunk at most one (incomplete) character is missing.
        so_far = ""
        for d in deltas:
            so_far += d.text
            one_shot = tok.rust.decode(ids[:d.num_tokens], skip_special_tokens=skip)
            assert so_far == one_shot or (so_far + "\ufffd" == one_shot)
    check()


def test_stream_equals_one_shot_decode_cut_at_first_stop(tok):
    @given(ids=token_ids(tok), cuts=st.lists(st.integers(0, 64), max_size=6), data=st.data(),
           include=st.booleans())
    def check(ids, cuts, data, include):
        full = tok.rust.decode(ids, skip_special_tokens=True)
        picks = st.text(alphabet="ab \n\ufffdé日", min_size=1, max_size=3)
        if full:
            picks = st.one_of(picks, st.tuples(st.integers(0, len(full) - 1), st.integers(1, 5))
                              .map(lambda p: full[p[0]:p[0] + p[1]]))
        stops = data.draw(st.lists(picks, min_size=1, max_size=3))
        deltas, _ = run_stream(tok, ids, cuts, stop=stops, include_stop_str_in_output=include)
        expected, matched = reference_cut(full, stops, include)
        assert "".join(d.text for d in deltas) == expected
        assert deltas[-1].matched_stop == matched
        if not include:
            for d in deltas:
                assert not any(s in d.text for s in stops)
        if matched is not None:  # usage is exact: the stop was complete after num_tokens ids, not before
            n = deltas[-1].num_tokens
            assert matched in tok.rust.decode(ids[:n], skip_special_tokens=True)
            before = tok.rust.decode(ids[:n - 1], skip_special_tokens=True).rstrip("\ufffd")
            assert reference_cut(before, stops, True)[1] is None
    check()


def test_lone_byte_tokens_are_not_held_to_the_end(tok):
    """The random model can emit one lone byte for a whole generation: text must flow as it comes."""
    lone = next(i for i, b in enumerate(tok._token_bytes) if b == b"\x80")
    stream = tok.open_stream(StreamOptions())
    texts = [stream.push([lone]).text for _ in range(64)]
    assert texts == ["\ufffd"] * 64
    assert stream.push([], last=True).text == ""
    assert "".join(texts) == tok.rust.decode([lone] * 64)


def test_incomplete_character_waits_for_its_last_byte(tok):
    ids = [i for b in "€".encode() for i, tb in enumerate(tok._token_bytes) if tb == bytes([b])]
    stream = tok.open_stream(StreamOptions())
    assert [stream.push([i]).text for i in ids] == ["", "", "€"]
    stream = tok.open_stream(StreamOptions())
    assert stream.push(ids[:2], last=True).text == "\ufffd"  # last flushes what is held back


def test_stop_usage_and_silence_after_the_match(tok):
    ids = tok.rust.encode("Hello, world! And more.", add_special_tokens=False).ids
    stream = tok.open_stream(StreamOptions(stop=["world"]))
    out = [stream.push([i]) for i in ids]
    matched = next(k for k, d in enumerate(out) if d.matched_stop)
    assert "".join(d.text for d in out) == "Hello, "
    assert out[matched].num_tokens == matched + 1
    assert tok.rust.decode(ids[:matched + 1]).endswith("world") or "world" in tok.rust.decode(ids[:matched + 1])
    assert all(d.text == "" and d.matched_stop == "world" and d.num_tokens == matched + 1 and not d.token_texts
               for d in out[matched + 1:])
    assert stream.push([], last=True).matched_stop == "world"


def test_stop_in_the_middle_of_a_chunk_consumes_only_up_to_it(tok):
    ids = tok.rust.encode("one two three four", add_special_tokens=False).ids
    stream = tok.open_stream(StreamOptions(stop=["two"], include_stop_str_in_output=True))
    d = stream.push(ids, last=True)
    assert d.text == "one two" and d.matched_stop == "two"
    assert d.num_tokens == len(d.token_texts) < len(ids)
    assert "".join(d.token_texts) == "one two"


def test_stop_matcher_holds_only_a_possible_stop_prefix():
    m = StopMatcher(["abc", "xyz"], include_stop_str_in_output=False)
    assert m.feed("hello a") == ("hello ", None, 0)
    assert m.feed("b") == ("", None, 1)
    assert m.feed("d") == ("abd", None, 2)
    assert m.feed("xxy") == ("x", None, 0)
    assert m.feed("z!") == ("", "xyz", 2)


def test_earliest_ending_stop_wins():
    m = StopMatcher(["abcd", "c"], include_stop_str_in_output=True)
    assert m.feed("abcd")[:2] == ("abc", "c")
    m = StopMatcher(["bc", "abc"], include_stop_str_in_output=False)
    assert m.feed("xabc")[:2] == ("x", "abc")


def test_prompt_context_and_special_tokens(tok):
    prompt = [0, 3, *tok.rust.encode("user\nhi", add_special_tokens=False).ids, 4]
    gen = [*tok.rust.encode("Hi there", add_special_tokens=False).ids, 4]
    kept = tok.open_stream(StreamOptions(prompt_token_ids=prompt, skip_special_tokens=False)).push(gen, last=True)
    assert kept.text == "Hi there<|im_end|>"
    dropped = tok.open_stream(StreamOptions(prompt_token_ids=prompt)).push(gen, last=True)
    assert dropped.text == "Hi there" and dropped.num_tokens == len(gen)


def test_window_decoder_matches_one_shot_on_text(tok):
    """The fallback for non-byte-level tokenizers, exercised on the same vocabulary."""
    decode = lambda ids, skip: tok.rust.decode(ids, skip_special_tokens=skip)  # noqa: E731
    for sample in SAMPLES:
        ids = tok.rust.encode(sample, add_special_tokens=False).ids
        stream = DetokenizeStream(WindowDecoder(decode, [0, 3], True), StreamOptions(), tok.check_ids)
        text = "".join(stream.push([i]).text for i in ids) + stream.push([], last=True).text
        assert text == sample


def test_window_decoder_bounds_its_hold_back(tok):
    lone = next(i for i, b in enumerate(tok._token_bytes) if b == b"\x80")
    decode = lambda ids, skip: tok.rust.decode(ids, skip_special_tokens=skip)  # noqa: E731
    stream = DetokenizeStream(WindowDecoder(decode, [], True), StreamOptions(), tok.check_ids)
    texts = [stream.push([lone]).text for _ in range(30)]
    assert sum(len(t) for t in texts) >= 30 - 6
    assert "".join(texts) + stream.push([], last=True).text == "\ufffd" * 30


def test_bad_ids_and_chunks_after_last(tok):
    with pytest.raises(errors.InvalidArgument) as e:
        tok.open_stream(StreamOptions(prompt_token_ids=[tok.vocab_size]))
    assert e.value.reason == "TOKEN_ID_OUT_OF_RANGE"
    stream = tok.open_stream(StreamOptions())
    with pytest.raises(errors.InvalidArgument) as e:
        stream.push([5, -1])
    assert e.value.reason == "TOKEN_ID_OUT_OF_RANGE"
    assert e.value.field_violations[0][0] == "chunk.token_ids[1]"
    stream.push([5], last=True)
    with pytest.raises(errors.InvalidArgument) as e:
        stream.push([5])
    assert e.value.reason == "STREAM_FINISHED"
