"""The embedded default corpus: a seeded generator of varied Korean text in six source styles.

    generate_corpus("data/corpus.jsonl", n_docs=20000, seed=0)             # clean
    generate_corpus("data/raw.jsonl", n_docs=20000, seed=0, noise=1.0)     # with planted noise

Each document is built from templates and word lists in `lexicon.py`, rendered in the register of
its source: news (written -다 style, dateline, quotes), blog (polite -어요, opener and sign-off),
cafe (community post with a [tag] title), comments (short casual lines), kin (Q&A: polite question,
formal -습니다 answer) and review (star rating, sentiment-matched remarks). Slots are bound once per
document, so a post keeps talking about the same dish or team, and particles follow the word before
them. This gives a tiny model visible structure to learn: particles, endings and style per source.

With `noise > 0` a seed-controlled fraction of documents carries what a cleaner must find: exact and
near duplicates, personal data, ads, ㅋㅋㅋ runs, meaningless word sequences and HTML.
"""
from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

from hyperclova.corpus import noise as nz
from hyperclova.corpus.korean import fill
from hyperclova.corpus.lexicon import CITIES, TOPICS

SOURCES = {"blog": 0.32, "cafe": 0.14, "news": 0.16, "comments": 0.16, "kin": 0.11, "review": 0.11}
REVIEW_TOPICS = ["쇼핑", "음식", "IT", "여행", "문화", "건강"]
# Per-document probabilities at noise=1.0; `noise` scales them all.
NOISE_RATES = {"exact_dup": 0.03, "near_dup": 0.03, "pii": 0.05, "spam": 0.02, "laugh": 0.04,
               "junk": 0.01, "html": 0.02}

_REACTIONS = ["와 대박", "ㄹㅇ 인정합니다", "기사 잘 봤습니다", "이게 말이 되나", "응원합니다!",
              "좋은 정보 감사합니다", "ㅋㅋ 공감"]
_REPORTERS = ["김하늘", "이바다", "박새롬", "최나래", "정다운", "한결"]
_NICK_A = ["sunny", "blue", "happy", "moon", "star", "coffee", "daily", "little", "green", "cozy"]
_NICK_B = ["cat", "life", "bear", "note", "mom", "dad", "walker", "cook", "diary", "trip"]

ENDINGS = {  # endings for ㅆ-final stems (see lexicon.py)
    "news": ["다."], "formal": ["습니다."], "polite": ["어요.", "어요.", "어요.", "네요."],
    "casual": ["음", "다", "네", "는데 ㅋㅋ"], "hearsay": ["대요.", "다고 해요."],
}
ADVICE = {
    "formal": ["는 것이 좋습니다.", "기 바랍니다.", "는 것을 추천드립니다."],
    "polite": ["는 게 좋아요.", "는 걸 추천해요.", "는 게 제일 좋더라고요."],
}


class _Doc:
    """Slot bindings for one document: named slots are chosen once, numbers drawn every time."""

    def __init__(self, rng: random.Random, topic: str):
        self.rng, self.topic, self.lex = rng, topic, TOPICS[topic]
        self.bound: dict[str, str] = {}
        self.used: set[str] = set()

    def word(self, slot: str) -> str:
        r = self.rng
        if slot == "n":
            return str(r.randint(2, 9))
        if slot == "pct":
            return f"{r.randint(1, 30) / 10 + r.randint(0, 9):.1f}"
        if slot == "temp":
            return str(r.randint(31, 38))
        if slot not in self.bound:
            pool = CITIES if slot == "city" else self.lex["slots"][slot]
            self.bound[slot] = r.choice(pool)
        return self.bound[slot]

    def render(self, template: str) -> str:
        return fill(template, self.word)

    def pick(self, kind: str) -> str:
        """A template of `kind` not yet used in this document (reuse only once all are used)."""
        pool = self.lex[kind]
        fresh = [t for t in pool if t not in self.used]
        t = self.rng.choice(fresh or pool)
        self.used.add(t)
        return t

    def clause(self, kind: str, style: str) -> str:
        return self.render(self.pick(kind)) + self.rng.choice(ENDINGS[style])

    def clauses(self, kind: str, style: str, k: int) -> list[str]:
        return [self.clause(kind, style) for _ in range(k)]

    def advice(self, style: str) -> str:
        return self.render(self.pick("advice")) + self.rng.choice(ADVICE[style])

    def main_word(self) -> str:
        return self.word(next(iter(self.lex["slots"])))


def _news(d: _Doc) -> str:
    r = d.rng
    title = d.render(r.choice(d.lex["headlines"]))
    body = d.clauses("facts", "news", r.randint(3, 5))
    speaker = r.choice(["업계 관계자는", "한 전문가는", "현장에 있던 시민은", "담당자는"])
    body.insert(r.randint(1, len(body)), f'{speaker} "{d.clause("facts", "formal")[:-1]}"라고 말했다.')
    dateline = f"({d.word('city')}=하이퍼뉴스) {r.choice(_REPORTERS)} 기자 = "
    tail = r.choice(["", "", "\n<저작권자 ⓒ 하이퍼뉴스, 무단 전재 및 재배포 금지>"])
    return f"[{d.topic}] {title}\n{dateline}{' '.join(body)}{tail}"


def _blog(d: _Doc) -> str:
    r = d.rng
    opener = r.choice(["안녕하세요, 여러분!", "이웃님들 안녕하세요~", "오랜만에 포스팅해요."])
    intro = r.choice([f"오늘은 {d.topic} 이야기를 해 보려고 해요.", f"요즘 {d.main_word()} 얘기가 많죠?",
                      f"오늘은 {d.main_word()}에 관한 후기를 남겨 볼게요."])
    paras = [f"{opener} {intro}"]
    for _ in range(r.randint(2, 3)):
        sents = d.clauses("feelings", "polite", r.randint(2, 3))
        if r.random() < 0.5:
            sents.insert(0, r.choice(["뉴스에서 봤는데", "들어 보니", "찾아보니까"]) + " "
                         + d.clause("facts", "hearsay"))
        if r.random() < 0.4:
            sents.append("그래서 " + d.advice("polite"))
        paras.append(" ".join(sents))
    paras.append(r.choice(["오늘 포스팅은 여기까지예요!", "도움이 되셨다면 공감 꾹 눌러 주세요 ^^",
                           "다음에 또 좋은 정보로 찾아올게요~"]))
    return "\n".join(paras)


def _cafe(d: _Doc) -> str:
    r = d.rng
    tag = r.choice(["질문", "후기", "정보", "잡담"])
    q = d.render(r.choice(d.lex["questions"]))
    title = q if tag == "질문" else f"{d.main_word()} {r.choice(['후기', '이야기', '정보 공유'])}"
    body = [r.choice(["회원님들 안녕하세요.", "가입하고 처음 글 써 봐요.", "늘 눈팅만 하다가 글 남겨요."])]
    body += d.clauses("feelings", "polite", r.randint(2, 4))
    body.append(q if tag == "질문" else d.advice("polite"))
    body.append(r.choice(["댓글 부탁드려요!", "다들 좋은 하루 보내세요.", "조언 주시면 감사하겠습니다."]))
    return f"[{tag}] {title}\n" + " ".join(body)


def _comments(d: _Doc) -> str:
    r = d.rng
    lines = [d.clause(r.choice(["feelings", "facts"]), "casual")]
    for _ in range(r.randint(0, 2)):
        x = r.random()
        if x < 0.4:
            lines.append(d.clause("feelings", "casual"))
        elif x < 0.7:
            lines.append(d.clause("facts", "casual"))
        else:
            fresh = [x for x in _REACTIONS if x not in lines]
            lines.append(r.choice(fresh))
    return "\n".join(lines)


def _kin(d: _Doc) -> str:
    r = d.rng
    q = d.render(r.choice(d.lex["questions"]))
    detail = d.clause("feelings", "polite")
    ask = f"질문: {q} {detail} 내공 {r.randint(1, 10)}0 걸어요."
    answer = [f"안녕하세요. {d.topic} 관련 질문에 답변드립니다.", d.clause("facts", "formal")]
    answer += [d.advice("formal") for _ in range(r.randint(1, 3))]
    answer.append(r.choice(["도움이 되셨길 바랍니다.", "채택 부탁드립니다.", "궁금한 점은 추가 질문 주세요."]))
    return f"{ask}\n답변: {' '.join(answer)}"


def _review(d: _Doc) -> str:
    r = d.rng
    stars = r.choices([5, 4, 3, 2, 1], weights=[40, 30, 15, 8, 7])[0]
    good = ["배송이 빨라서 좋았어요.", "재구매 의사 있어요.", "가성비 최고예요.", "주변에도 추천했어요."]
    bad = ["다시는 안 살 것 같아요.", "환불 요청했어요.", "기대보다 별로였어요.", "품질이 아쉬워요."]
    body = d.clauses("feelings", "polite", r.randint(2, 3))
    body.append(r.choice(good if stars >= 4 else bad if stars <= 2 else good + bad))
    return f"별점 {'★' * stars}{'☆' * (5 - stars)} ({stars}점)\n" + " ".join(body)


_BUILDERS = {"news": _news, "blog": _blog, "cafe": _cafe, "comments": _comments, "kin": _kin,
             "review": _review}


def _user_id(rng: random.Random) -> str:
    return f"{rng.choice(_NICK_A)}_{rng.choice(_NICK_B)}{rng.randint(1, 99)}"


def _add_noise(rng: random.Random, rec: dict, rates: dict, counts: Counter) -> None:
    text = rec["text"]
    if rng.random() < rates["pii"]:
        sent, kind = nz.pii_sentence(rng)
        text += " " + sent
        counts["pii"] += 1
        counts[f"pii_{kind}"] += 1
    if rng.random() < rates["laugh"]:
        text += " " + nz.laugh_run(rng)
        counts["laugh"] += 1
    if rng.random() < rates["html"]:
        text = "<p>" + text.replace("\n", "</p><br><p>") + "</p>"
        counts["html"] += 1
    if rng.random() < rates["spam"]:
        text = nz.spam_text(rng, rng.choice(TOPICS["쇼핑"]["slots"]["product"]))
        counts["spam"] += 1
    elif rng.random() < rates["junk"]:
        text = nz.junk_text(rng, text.split())
        counts["junk"] += 1
    rec["text"] = text


def iter_documents(n_docs: int = 20000, seed: int = 0, noise: float = 0.0):
    """Yield `n_docs` records `{"id", "text", "source", "category", "user_id"?}`; `noise` in [0, 1+]."""
    if n_docs < 0 or noise < 0:
        raise ValueError("n_docs and noise must be >= 0")
    rng = random.Random(seed)
    rates = {k: v * noise for k, v in NOISE_RATES.items()}
    sources, weights = list(SOURCES), list(SOURCES.values())
    topics = list(TOPICS)
    users = [_user_id(rng) for _ in range(max(50, n_docs // 8))]
    recent: list[dict] = []  # a window of earlier records that duplicates are drawn from
    counts: Counter = Counter()
    for i in range(n_docs):
        rec_id = f"syn{seed}-{i:07d}"
        if recent and rng.random() < rates["exact_dup"] + rates["near_dup"]:
            orig = rng.choice(recent)
            exact = rng.random() < rates["exact_dup"] / (rates["exact_dup"] + rates["near_dup"])
            text = orig["text"] if exact else nz.near_duplicate(rng, orig["text"])
            counts["exact_dup" if exact else "near_dup"] += 1
            rec = {**orig, "id": rec_id, "text": text}
        else:
            source = rng.choices(sources, weights)[0]
            topic = rng.choice(REVIEW_TOPICS if source == "review" else topics)
            rec = {"id": rec_id, "text": _BUILDERS[source](_Doc(rng, topic)), "source": source,
                   "category": topic}
            if source != "news":
                rec["user_id"] = rng.choice(users)
            if noise:
                _add_noise(rng, rec, rates, counts)
            if len(recent) < 2000:
                recent.append(rec)
            else:
                recent[rng.randrange(2000)] = rec
        yield rec, counts


def generate_corpus(path: str | Path, n_docs: int = 20000, seed: int = 0, noise: float = 0.0) -> dict:
    """Write `n_docs` synthetic documents as JSONL to `path` (atomically); return statistics."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    t0 = time.perf_counter()
    by_source: Counter = Counter()
    by_category: Counter = Counter()
    n_bytes = n_chars = 0
    counts: Counter = Counter()
    with open(tmp, "w", encoding="utf-8") as f:
        for rec, counts in iter_documents(n_docs, seed, noise):
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            f.write(line)
            n_bytes += len(line.encode("utf-8"))
            n_chars += len(rec["text"])
            by_source[rec["source"]] += 1
            by_category[rec["category"]] += 1
    os.replace(tmp, path)
    return {"path": str(path), "docs": n_docs, "seed": seed, "noise": noise, "bytes": n_bytes,
            "text_chars": n_chars, "seconds": round(time.perf_counter() - t0, 3),
            "by_source": dict(sorted(by_source.items())),
            "by_category": dict(sorted(by_category.items())), "planted": dict(sorted(counts.items()))}
