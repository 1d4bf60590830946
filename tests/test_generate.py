import pytest
import torch

from hyperclova.config import ModelConfig
from hyperclova.errors import UserError
from hyperclova.generate import (Sampling, adjust_logits, filter_logits, generate, pick_tokens,
                                 token_logprobs)
from hyperclova.model.gpt import build_model

CFG = ModelConfig(n_layers=3, d_model=64, n_heads=4, vocab_size=101, seq_len=48)
PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]


@pytest.fixture(scope="module")
def model():
    return build_model(CFG, seed=0)


def test_greedy_with_cache_equals_without(model):
    s = Sampling(max_new_tokens=30, temperature=0)
    assert generate(model, PROMPTS, s, use_cache=True) == generate(model, PROMPTS, s, use_cache=False)


def test_batched_equals_one_by_one(model):
    s = Sampling(max_new_tokens=12, temperature=0)
    batch = generate(model, PROMPTS, s)
    assert batch == [generate(model, [p], s)[0] for p in PROMPTS]


def test_greedy_matches_full_forward_argmax(model):
    prompt = PROMPTS[0]
    out = generate(model, [prompt], Sampling(max_new_tokens=5, temperature=0))[0]
    seq = list(prompt)
    for _ in range(5):
        seq.append(model(torch.tensor([seq]))[0, -1].argmax().item())
    assert out == seq[len(prompt):]


def test_stops_at_end_of_document(model):
    s = Sampling(max_new_tokens=10, temperature=0)
    first = generate(model, [PROMPTS[0]], s)[0]
    eod = first[2]  # make the third greedy token the end-of-document token
    out = generate(model, [PROMPTS[0]], Sampling(max_new_tokens=10, temperature=0, eod_id=eod))[0]
    assert out == first[: first.index(eod) + 1] and len(out) < 10


def test_max_tokens_and_context_limit(model):
    assert len(generate(model, [[1, 2]], Sampling(max_new_tokens=7, temperature=0))[0]) == 7
    long = list(range(1, 46))
    assert len(generate(model, [long], Sampling(max_new_tokens=10, temperature=0))[0]) == 48 - 45
    with pytest.raises(UserError, match="context"):
        generate(model, [list(range(1, 49))], Sampling())
    with pytest.raises(UserError, match="at least one token"):
        generate(model, [[]], Sampling())


def test_sampling_is_seeded_and_filters_apply(model):
    s = Sampling(max_new_tokens=15, temperature=1.0, top_k=5, top_p=0.9)
    run = lambda seed: generate(model, PROMPTS, s, generator=torch.Generator().manual_seed(seed))
    assert run(1) == run(1) and run(1) != run(2)
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert kept_ids(logits, Sampling(temperature=1.0, top_k=2)) == {0, 1}
    probs = logits.softmax(-1)[0]  # 0.64, 0.24, ...: top_p=0.8 keeps the first two
    assert probs[0] < 0.8 < probs[0] + probs[1]
    assert kept_ids(logits, Sampling(temperature=1.0, top_p=0.8)) == {0, 1}
    assert kept_ids(logits, Sampling(temperature=1.0, top_k=3, top_p=1.0)) == {0, 1, 2}


def kept_ids(logits, s):
    return set(filter_logits(logits, [s])[0].isfinite().nonzero().flatten().tolist())


def test_sampled_frequencies_follow_the_filtered_distribution():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    rows = [Sampling(temperature=0.7, top_k=4)] * 4000
    x = adjust_logits(logits.expand(4000, -1), rows)
    ids = pick_tokens(x, rows, torch.rand(4000, generator=torch.Generator().manual_seed(0)))
    expect = torch.cat([(logits[:4] / 0.7).softmax(-1), torch.zeros(2)])
    freq = torch.bincount(ids, minlength=6).float() / 4000
    assert freq[4:].sum() == 0 and torch.allclose(freq, expect, atol=0.03), (freq, expect)


def test_padded_and_special_ids_are_never_generated(model):
    """The embedding is padded past the tokenizer (101 > 90 here); make the padded rows and a
    special id the likeliest picks: greedy and sampling must still avoid them."""
    m = build_model(CFG, seed=0)
    with torch.no_grad():
        m.tok_emb.weight[90:] *= 50
        m.tok_emb.weight[3] *= 50
    free = Sampling(max_new_tokens=20, temperature=0)
    assert any(t >= 90 or t == 3 for row in generate(m, PROMPTS, free) for t in row)
    for s in (Sampling(max_new_tokens=20, temperature=0, vocab_limit=90, suppress_ids=(3,)),
              Sampling(max_new_tokens=20, temperature=1.5, vocab_limit=90, suppress_ids=(3,))):
        out = generate(m, PROMPTS, s, generator=torch.Generator().manual_seed(0))
        assert all(t < 90 and t != 3 for row in out for t in row)
    lp = token_logprobs(torch.randn(2, 101), vocab_limit=90)
    assert lp.shape == (2, 90) and torch.allclose(lp.exp().sum(-1), torch.ones(2))


def test_penalties():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    counts = torch.tensor([[2.0, 1.0, 0.0, 0.0]])
    seen = torch.tensor([[True, True, False, False]])
    s = Sampling(presence_penalty=0.5, frequency_penalty=0.25, repetition_penalty=2.0)
    got = adjust_logits(logits, [s], counts, seen)
    # repetition: 2/2=1, -2*2=-4; then frequency (x count) and presence (once) on generated ids
    assert got.tolist() == [[1.0 - 0.5 - 0.5, -4.0 - 0.25 - 0.5, 1.0, 0.5]]
    assert adjust_logits(logits, [Sampling()]).tolist() == logits.tolist()


def test_frequency_penalty_reduces_repetition(model):
    prompt = [PROMPTS[0]]
    plain = generate(model, prompt, Sampling(max_new_tokens=30, temperature=0))[0]
    pen = generate(model, prompt, Sampling(max_new_tokens=30, temperature=0, frequency_penalty=2.0))[0]
    assert len(set(pen)) > len(set(plain))


def test_each_row_samples_with_its_own_settings():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    rows = [Sampling(temperature=0), Sampling(temperature=1.0, top_k=1), Sampling(temperature=2.0)]
    u = torch.tensor([0.3, 0.9, 0.5])
    ids = pick_tokens(adjust_logits(logits, rows), rows, u)
    assert ids[0] == logits[0].argmax() and ids[1] == logits[1].argmax()
    alone = pick_tokens(adjust_logits(logits[2:], rows[2:]), rows[2:], u[2:])
    assert ids[2] == alone[0]  # a row's pick does not depend on its neighbours


@pytest.mark.parametrize("field,value,message", [
    ("max_new_tokens", -1, "max_new_tokens must be 0 or more"),
    ("temperature", -0.1, "temperature must be 0"),
    ("top_p", 0.0, "top_p must be in (0, 1]"),
    ("top_p", 1.5, "top_p must be in (0, 1]"),
    ("top_k", -3, "top_k must be 0"),
    ("repetition_penalty", 0.0, "repetition_penalty must be above 0"),
    ("presence_penalty", 3.0, "presence_penalty must be in [-2, 2]"),
    ("temperature", float("nan"), "temperature must be a finite number"),
])
def test_bad_sampling_arguments_name_the_field(field, value, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        Sampling(**{field: value}).check()
    with pytest.raises(UserError, match="--top-p"):
        Sampling(top_p=0.0).check({"top_p": "--top-p"})


def test_partial_sort_filters_equal_a_full_sort():
    """The filters widen their candidate set until every row's nucleus is inside it: the kept ids
    equal a plain full-sort reference, for peaked and for flat (widening) distributions."""
    g = torch.Generator().manual_seed(0)
    logits = torch.cat([torch.randn(6, 3000, generator=g) * 8, torch.randn(6, 3000, generator=g) * 0.05])
    rows = [Sampling(temperature=t, top_k=k, top_p=p) for t, k, p in
            [(1.0, 0, 0.9), (0.7, 40, 1.0), (1.3, 200, 0.5), (1.0, 0, 0.99), (1.0, 1, 1.0), (1.0, 0, 1.0)] * 2]
    got = filter_logits(logits, rows).isfinite()
    for i, s in enumerate(rows):
        x = logits[i] / s.temperature
        vals, order = x.sort(descending=True)
        drop = torch.arange(3000) >= (s.top_k or 3000)
        if s.top_p < 1:
            p = vals.masked_fill(drop, float("-inf")).softmax(-1)
            drop |= p.cumsum(-1) - p >= s.top_p
        want = torch.ones(3000, dtype=torch.bool)
        want[order[drop]] = False
        assert torch.equal(got[i], want), (i, s)
