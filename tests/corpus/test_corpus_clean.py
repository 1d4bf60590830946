"""Normalisation and the individual quality filters."""
from __future__ import annotations

import unicodedata

from hyperclova.corpus.clean import NormalizeConfig, normalize
from hyperclova.corpus.filters import HangulRatio, Length, Profanity, Repetition, Spam


def test_normalize():
    cfg = NormalizeConfig(strip_html=True)
    decomposed = unicodedata.normalize("NFD", "한국어")
    assert decomposed != "한국어" and normalize(decomposed, cfg) == "한국어"
    assert normalize("가\u200b나\x00다\ufeff", cfg) == "가나다"
    assert normalize("  가   나\t\u00a0다  \n\n\n\n라 ", cfg) == "가 나 다\n\n라"
    assert normalize("웃겨ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ 진짜!!!!!!!", cfg) == "웃겨ㅋㅋㅋㅋㅋ 진짜!!!!!"
    assert normalize("별점 ★★★★★", cfg) == "별점 ★★★★★"
    assert normalize("1000000원", cfg) == "1000000원"  # digits are never capped
    assert normalize("<p>안녕&nbsp;하세요</p><br><script>x()</script><b>굵게</b>", cfg) == "안녕 하세요\n\n굵게"
    assert normalize("<p>태그</p>", NormalizeConfig(strip_html=False)) == "<p>태그</p>"


def test_filters_name_their_reason():
    assert Length(min_chars=5)("짧다")[0] == "too_short"
    assert Length(min_chars=1, max_chars=5)("아주 긴 문장입니다")[0] == "too_long"
    assert Length()("적당한 길이의 문장이에요. 이 정도면 충분해요.") is None
    assert HangulRatio()("English only text here")[0] == "low_hangul"
    assert HangulRatio()("한국어 문장에 English 조금") is None
    rep = Repetition()
    assert rep(" ".join(["좋아요 최고"] * 20))[0] == "repetitive_ngrams"
    assert rep("같은 줄\n같은 줄\n같은 줄\n다른 줄")[0] == "duplicate_lines"
    assert rep("★☆★☆★ ♥♥♥♥ ◆◆◆◆ ※※※")[0] == "symbols"
    assert rep("오늘은 친구와 함께 공원에 갔어요. 날씨가 좋아서 산책을 오래 했어요.") is None
    assert Profanity()("이 씨발 진짜 병신 같은")[0] == "profanity"
    assert Profanity()("오늘 경기는 정말 재미있었어요 다음에도 보러 갈게요") is None
    assert Spam()("특가 할인 클릭 http://x.example.com 문의 010-1234-5678")[0] == "spam"
    assert Spam()("연말 세일 때 청바지를 싸게 샀어요. 품질도 좋고 배송도 빨랐어요. 만족합니다.") is None


def test_replaceable_word_list(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# my list\n바나나\n", encoding="utf-8")
    flt = Profanity(words_file=str(words), max_density=0.1)
    assert flt("바나나 바나나 맛있다")[0] == "profanity" and flt("씨발 이라는 단어") is None


def test_empty_word_list_matches_nothing(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n", encoding="utf-8")
    assert Profanity(words_file=str(empty))("아무 말이나 적어 봅니다") is None
