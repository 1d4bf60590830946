"""`to-hf --tokenizer`: the exported directory's AutoTokenizer gives hyperclova's ids, including the
morpheme-aware type through the wrapper, and the generation config knows end-of-document."""
from __future__ import annotations

import json

import pytest
from convert_helpers import TINY, make_config, random_model, save_training_checkpoint

from hyperclova.convert import to_hf
from hyperclova.convert.hf import ConversionError

transformers = pytest.importorskip("transformers")

DOCS = [
    "안녕하세요, 저는 학생입니다. 오늘은 날씨가 좋아서 산책을 했어요.",
    "한국어 형태소 분석기는 문장을 형태소 단위로 나눕니다.",
    "서울특별시 강남구에서 열린 회의에는 100명이 참석했다!",
    "모델을 허깅페이스 형식으로 내보내면 다른 도구에서도 쓸 수 있습니다.",
    "English words, 숫자 12345, and <|endoftext|> stay text.",
]


@pytest.fixture(scope="module")
def tokenizers_dir(tmp_path_factory):
    from hyperclova.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("tok")
    corpus = root / "corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as f:
        for i in range(60):
            for d in DOCS:
                f.write(json.dumps({"text": f"{i} {d}"}, ensure_ascii=False) + "\n")
    for kind in ("morpheme-bbpe", "bbpe"):
        train_tokenizer([str(corpus)], str(root / kind), type=kind, vocab_size=600, workers=1,
                        show_progress=False, verify_docs=50)
    return root


@pytest.mark.parametrize("kind,remote", [("morpheme-bbpe", True), ("bbpe", False)])
def test_exported_tokenizer_matches_hyperclova(tmp_path, tiny_ckpt, tokenizers_dir, kind, remote):
    from hyperclova.tokenizer import load_tokenizer

    _, _, ckpt = tiny_ckpt
    src = tokenizers_dir / kind
    summary = to_hf(ckpt, tmp_path / "hf", tokenizer_dir=src)
    ours = load_tokenizer(src)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf", trust_remote_code=remote)
    assert (tmp_path / "hf" / "tokenization_hyperclova.py").exists() == remote
    assert any("trust_remote_code" in n for n in summary.notes) == remote
    for text in DOCS:
        ids = hf(text, add_special_tokens=False)["input_ids"]
        assert ids == ours.encode(text), text
        assert hf.decode(ids) == text
    if remote:  # the morpheme split really happens: without it the ids differ on some text
        plain = transformers.PreTrainedTokenizerFast(tokenizer_file=str(src / "tokenizer.json"))
        assert any(plain(t)["input_ids"] != ours.encode(t) for t in DOCS)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert config["eos_token_id"] == gen["eos_token_id"] == ours.eod_id == hf.eos_token_id


def test_tokenizer_larger_than_model_vocab_refused(tmp_path, tokenizers_dir):
    cfg = make_config(TINY + ["model.vocab_size=512"], tmp_path / "ckpt")  # the tokenizer has ~560
    save_training_checkpoint(cfg, random_model(cfg))
    with pytest.raises(ConversionError, match=r"tokenizer vocab_size 5[1-9]\d is larger than the model's vocab_size 512 "
                       r"\(tok_emb\.weight has 512 rows\)"):
        to_hf(tmp_path / "ckpt", tmp_path / "hf", tokenizer_dir=tokenizers_dir / "bbpe")
