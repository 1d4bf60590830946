"""Streamed text with a real byte-level tokenizer: split characters are held back (Korean, emoji,
Hanja), stop strings are found on text across tokens, and the output filters mask or stop before
any part of what they catch is sent."""
from __future__ import annotations

from collections import Counter

import pytest

from hyperclova.errors import UserError
from hyperclova.serve.filters import FilterConfig, Filters, FilterTripped
from hyperclova.serve.text import TextStream, token_pieces

MIXED = "한국어 문장입니다 😀🇰🇷 漢字와 한글, 그리고 English."


def stream(tok, text, stop=(), filters=None):
    ts = TextStream(tok, stop, filters)
    deltas = []
    for i in tok.encode(text):
        deltas.append(ts.push(i))
        if ts.done:
            break
    deltas.append(ts.close())
    return deltas, ts


def test_split_characters_never_show_as_replacement(tokenizer):
    ids = tokenizer.encode(MIXED)
    partial = [i for i in ids if _invalid(tokenizer.id_to_bytes(i))]
    assert len(partial) >= 3  # this text really does cut characters across tokens
    deltas, ts = stream(tokenizer, MIXED)
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == MIXED == tokenizer.decode(ids) and ts.finish_reason is None
    assert "".join(token_pieces(tokenizer, ids)) == MIXED


def _invalid(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def test_stop_string_across_tokens(tokenizer):
    deltas, ts = stream(tokenizer, MIXED, stop=["漢字"])
    assert "".join(deltas) == "한국어 문장입니다 😀🇰🇷 " and ts.finish_reason == "stop"
    assert not any("漢" in d for d in deltas)


def test_pii_is_masked_before_any_of_it_is_sent(tokenizer):
    text = "연락처는 010-1234-5678 이고 메일은 hong.gd@example.com 입니다. 계좌 110-123-456789 로 보내요."
    deltas, ts = stream(tokenizer, text, filters=Filters(FilterConfig()))
    out = "".join(deltas)
    assert out == "연락처는 <|phone|> 이고 메일은 <|email|> 입니다. 계좌 <|account|> 로 보내요."
    assert not any(c.isdigit() for c in out) and ts.filter_counts == Counter(phone=1, email=1, account=1)
    assert sum(1 for d in deltas if d) >= 5  # Korean still streams in pieces around the held items


@pytest.mark.parametrize("text,item,kind", [
    ("제 차량 번호는 12가 3456 입니다.", "12가 3456", "vehicle_plate"),
    ("차량번호 서울 12가 3456 이에요", "서울 12가 3456", "vehicle_plate"),
    ("운전면허 서울 12-345678-90 입니다", "서울 12-345678-90", "driver_license")])
def test_korean_pii_items_are_held_until_masked(tokenizer, text, item, kind):
    """Items with Hangul inside (plates, region-coded licences) arrive over several tokens; no
    piece of them may go out before the rule has seen the whole item."""
    deltas, ts = stream(tokenizer, text, filters=Filters(FilterConfig()))
    assert "".join(deltas) == text.replace(item, f"<|{kind}|>") and ts.filter_counts == Counter({kind: 1})
    assert not any(c.isdigit() for c in "".join(deltas))
    deltas, ts = stream(tokenizer, text, filters=Filters(FilterConfig(pii_output="stop")))
    assert "".join(deltas) == text[:text.index(item)] and ts.finish_reason == "content_filter"


def test_banned_words_stop_or_mask(tokenizer):
    text = "정말 좋은데 씨발 이건 뭐야"
    deltas, ts = stream(tokenizer, text, filters=Filters(FilterConfig()))
    assert "".join(deltas) == "정말 좋은데 " and ts.finish_reason == "content_filter"
    assert not any("씨" in d for d in deltas) and ts.filter_counts["banned_words"] == 1
    deltas, ts = stream(tokenizer, text, filters=Filters(FilterConfig(banned_output="mask")))
    assert "".join(deltas) == "정말 좋은데 ** 이건 뭐야" and ts.finish_reason is None
    deltas, ts = stream(tokenizer, text, filters=Filters(FilterConfig(max_output_chars=4)))
    assert "".join(deltas) == "정말 좋" and ts.finish_reason == "content_filter"


def test_input_filters():
    f = Filters(FilterConfig(pii_input="reject"))
    with pytest.raises(FilterTripped, match="banned_words"):
        f.check_input("야 꺼져")
    with pytest.raises(FilterTripped, match="pii.*phone"):
        f.check_input("제 번호는 010-1234-5678 입니다")
    assert f.check_input("안녕하세요") == "안녕하세요"
    masking = Filters(FilterConfig(pii_input="mask", banned_input="off"))
    assert masking.check_input("번호 010-1234-5678") == "번호 <|phone|>"


def test_filter_config_file_errors_name_the_key(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text("banned_words:\n  words: [금지어]\n  output: mask\npii:\n  input: off\nmax_output_chars: 100\n")
    cfg = FilterConfig.load(p)
    assert cfg.banned_extra == ["금지어"] and cfg.banned_output == "mask" and cfg.pii_input == "off"
    assert Filters(cfg).mask("이건 금지어 입니다", Counter()) == "이건 *** 입니다"
    for text, msg in [("pii:\n  output: drop\n", "pii.output must be one of"),
                      ("banned_words:\n  wordz: []\n", "unknown key.*wordz"),
                      ("pii:\n  types: [phone, dna]\n", "unknown type.*dna"),
                      ("max_output_chars: -1\n", "max_output_chars")]:
        p.write_text(text)
        with pytest.raises(UserError, match=msg):
            FilterConfig.load(p)
