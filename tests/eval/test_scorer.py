"""Log-likelihood and generation scoring against direct computations from the model."""
from __future__ import annotations

import pytest
import torch

from hyperclova.eval.scorer import PlainModel, Scorer, truncate_at_stop


def direct_logprob(model, ids: list[int], split: int) -> float:
    with torch.no_grad():
        logp = model(torch.tensor([ids[:-1]])).float().log_softmax(-1)[0]
    return sum(logp[t - 1, ids[t]].item() for t in range(split, len(ids)))


def test_continuation_split_moves_back_over_a_straddling_token(model, tok):
    s = Scorer(PlainModel(model), tok)
    context, continuation = "오늘은 날씨가 좋습", "니다"
    enc = s.encode_pair(context, continuation)
    assert enc.ids == tok.encode(context + continuation)  # one encoding, as in training
    assert enc.straddled
    # the morpheme 습니다 is one token spanning both sides: it is scored whole
    assert tok.decode(enc.ids[enc.split:]) == "습니다"
    assert tok.decode(enc.ids[: enc.split]) == "오늘은 날씨가 좋"
    # encoding the two sides apart gives a token sequence the model never saw in training
    assert tok.encode(context) + tok.encode(continuation) != enc.ids
    r = s.loglikelihood([(context, continuation)])[0]
    assert r.straddled and r.n_tokens == len(enc.ids) - enc.split
    assert r.logprob == pytest.approx(direct_logprob(model, enc.ids, enc.split), abs=1e-5)


def test_morpheme_boundary_split_is_clean(model, tok):
    s = Scorer(PlainModel(model), tok)
    enc = s.encode_pair("감정:", " 긍정")
    assert not enc.straddled
    assert tok.decode(enc.ids[enc.split:]) == " 긍정"
    enc = s.encode_pair("학생", "입니다")  # MeCab-ko: 학생 | 입니다
    assert not enc.straddled and tok.decode(enc.ids[enc.split:]) == "입니다"


def test_split_inside_a_morpheme_moves_back_to_its_start(model, tok):
    """A token boundary is not enough: " 영화" is one morpheme of several tokens (the bytes of
    " 영", then 화) here, so a context ending after 영 would score 화 alone, a piece the
    pre-splitter never makes."""
    s = Scorer(PlainModel(model), tok)
    context, continuation = "이 영", "화는 정말"
    text = context + continuation
    assert tok.segments(text)[:3] == ["이", " 영화", "는"]
    ids = tok.encode(text)
    ends = s._token_ends(ids, text)
    assert len(context.encode()) in ends  # the plain token rule would split cleanly here
    enc = s.encode_pair(context, continuation)
    assert enc.straddled and enc.ids == ids
    assert tok.decode(enc.ids[enc.split:]) == " 영화는 정말"
    assert tok.decode(enc.ids[: enc.split]) == "이"
    r = s.loglikelihood([(context, continuation)])[0]
    assert r.straddled and r.logprob == pytest.approx(direct_logprob(model, enc.ids, enc.split), abs=1e-5)


def test_loglikelihood_equals_direct_computation_and_is_batch_size_invariant(model, tok):
    pairs = [("문장: 정말 재미있는 영화\n감정:", " 긍정"), ("문장: 별로였다\n감정:", " 부정"),
             ("짧은", " 문장입니다 그리고 조금 더 긴 이어짐"), ("제목: 코스피 상승\n주제:", " 경제"),
             ("a", "b"), ("서울의 날씨는 맑고", " 따뜻하겠습니다.")]
    ref = None
    for bs in (1, 2, 4, 16):
        res = Scorer(PlainModel(model), tok, batch_size=bs).loglikelihood(pairs)
        lps = [r.logprob for r in res]
        if ref is None:
            ref = res
            s = Scorer(PlainModel(model), tok)
            for (c, x), r in zip(pairs, res):
                e = s.encode_pair(c, x)
                assert r.logprob == pytest.approx(direct_logprob(model, e.ids, e.split), abs=1e-5)
        else:
            assert lps == pytest.approx([r.logprob for r in ref], abs=1e-5)
            assert [r.greedy for r in res] == [r.greedy for r in ref]
    # a small token budget forces one request per batch: same numbers
    res = Scorer(PlainModel(model), tok, batch_size=16, batch_tokens=8).loglikelihood(pairs)
    assert [r.logprob for r in res] == pytest.approx([r.logprob for r in ref], abs=1e-5)


def test_rolling_windows_score_every_token_once(model, tok):
    s = Scorer(PlainModel(model), tok)
    ids = tok.encode("오늘 서울의 날씨는 맑겠습니다. " * 20)[:300]
    assert len(ids) == 300
    for window, stride in ((128, 128), (128, 64), (32, 7)):
        items = s.rolling_windows(ids, window, stride)
        assert sum(len(x) - split for x, split in items) == len(ids)
        assert all(len(x) <= window + 1 for x, _ in items)
        targets = [t for x, split in items for t in x[split:]]
        assert targets == ids
    # a document that fits one window: the direct log-probability after the end-of-document token
    short = ids[:60]
    lp, n = s.rolling_loglikelihood(short)
    assert n == 60
    assert lp == pytest.approx(direct_logprob(model, [tok.eod_id] + short, 1), abs=1e-4)
    # a longer stride overlap gives each token more context, never fewer tokens
    assert s.rolling_loglikelihood(ids, 128, 32)[1] == 300


class ForwardOnly:
    """The engine's view of a model: forward_eval only, no plain GPT for the KV-cache path."""

    def __init__(self, model):
        self._m = PlainModel(model)
        self.seq_len, self.dp_rank, self.dp_size = self._m.seq_len, 0, 1

    def forward_eval(self, tokens, reduce):
        return self._m.forward_eval(tokens, reduce)


def test_greedy_through_forward_eval_equals_the_kv_cache_generator(model, tok):
    prompts = ["오늘 서울의 날씨는", "질문: 주말에 가볼 만한 곳", "이 제품을 사용해 보니 정말"]
    cached = Scorer(PlainModel(model), tok, batch_size=2).generate(prompts, [], 12)
    forward = Scorer(ForwardOnly(model), tok, batch_size=3).generate(prompts, [], 12)
    one = [Scorer(PlainModel(model), tok).generate([p], [], 12)[0] for p in prompts]
    assert cached == forward == one
    assert any(cached)


def test_stop_sequences_cut_after_decoding():
    assert truncate_at_stop("답변 내용\n다음 질문", ["\n"]) == "답변 내용"
    assert truncate_at_stop("abc###def\nx", ["\n", "###"]) == "abc"
    assert truncate_at_stop("no stop", ["\n", ""]) == "no stop"


def test_choices_sharing_a_context_run_it_once_and_score_the_same(model, tok):
    """The plain model scores the choices of one question on a shared KV-cached context; the
    numbers equal the forward-only path (the engine's) and a direct computation."""
    ctx = ["문장: 정말 재미있는 영화\n감정:", "제목: 코스피 상승 마감\n주제:"]
    conts = [" 긍정", " 부정", " 매우 긴 이어짐 문장입니다", " 경제"]
    pairs = [(c, x) for c in ctx for x in conts] + [("혼자인 문맥", " 하나")]
    shared = Scorer(PlainModel(model), tok, batch_size=3).loglikelihood(pairs)
    forward = Scorer(ForwardOnly(model), tok, batch_size=5).loglikelihood(pairs)
    assert [r.logprob for r in shared] == pytest.approx([r.logprob for r in forward], abs=1e-5)
    assert [r.greedy for r in shared] == [r.greedy for r in forward]
    assert [r.n_tokens for r in shared] == [r.n_tokens for r in forward]
    s = Scorer(PlainModel(model), tok)
    for (c, x), r in zip(pairs, shared):
        e = s.encode_pair(c, x)
        assert r.logprob == pytest.approx(direct_logprob(model, e.ids, e.split), abs=1e-5)
