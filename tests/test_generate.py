import pytest
import torch

from hyperclova.config import ModelConfig
from hyperclova.errors import UserError
from hyperclova.generate import Sampling, _filter_logits, generate
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
    kept = _filter_logits(logits, Sampling(temperature=1.0, top_k=2)).isfinite()
    assert kept.tolist() == [[True, True, False, False, False]]
    probs = logits.softmax(-1)[0]  # 0.64, 0.24, ...: top_p=0.8 keeps the first two
    assert probs[0] < 0.8 < probs[0] + probs[1]
    kept = _filter_logits(logits, Sampling(temperature=1.0, top_p=0.8)).isfinite()
    assert kept.tolist() == [[True, True, False, False, False]]
