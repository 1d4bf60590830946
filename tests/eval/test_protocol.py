"""The prompt builder: seeded demonstrations, front-first dropping, the query never truncated."""
from __future__ import annotations

import random

import pytest

from eval_helpers import FIXTURES
from hyperclova.errors import UserError
from hyperclova.eval.formats import read_examples
from hyperclova.eval.protocol import (
    PromptBuilder,
    demo_text,
    draw_demonstrations,
    paragraph_demonstrations,
)
from hyperclova.eval.tasks import load_task, parse_task


@pytest.fixture(scope="module")
def nsmc():
    spec = load_task("nsmc").replace(num_fewshot=5, runs=3, seed=42)
    train = read_examples("nsmc", FIXTURES / "ratings_train.txt")
    test = read_examples("nsmc", FIXTURES / "ratings_test.txt")
    return spec, train.items, test.items


def test_demonstrations_are_the_seeded_ones(nsmc):
    spec, train, _ = nsmc
    sets = [draw_demonstrations(spec, run, train) for run in range(3)]
    for run, demos in enumerate(sets):
        assert demos == random.Random(f"42:{run}").sample(train, 5)
        assert demos == draw_demonstrations(spec, run, train)  # reproducible
    assert sets[0] != sets[1] != sets[2]
    assert draw_demonstrations(spec.replace(seed=43), 0, train) != sets[0]


def test_prompt_holds_demonstrations_in_order_then_the_query(nsmc):
    spec, train, test = nsmc
    demos = draw_demonstrations(spec, 0, train)
    b = PromptBuilder(spec, len, budget=10_000)  # count characters: easy to reason about
    p = b.build(test[0], demos, reserve=3)
    expected = "".join(demo_text(spec, d) + "\n\n" for d in demos) + "문장: 굳 ㅋ\n감정:"
    assert p.context == expected and p.n_demos == 5 and p.dropped == 0
    assert demo_text(spec, demos[0]).endswith("감정: " + ("긍정" if demos[0].fields["label"] else "부정"))


def test_demonstrations_drop_from_the_front_and_the_query_is_never_truncated(nsmc):
    spec, train, test = nsmc
    demos = draw_demonstrations(spec, 0, train)
    query = test[2]  # a long document
    q = f"문장: {query.fields['document']}\n감정:"
    parts = [demo_text(spec, d) + "\n\n" for d in demos]
    budget = len(q) + len(parts[-1]) + len(parts[-2]) + 3 + 1  # room for the last two demos
    b = PromptBuilder(spec, len, budget=budget)
    p = b.build(query, demos, reserve=3)
    assert p.context == parts[-2] + parts[-1] + q and p.dropped == 3
    assert b.counts.demos_dropped == 3 and b.counts.prompts_with_dropped_demos == 1
    # too small even for the query alone: skipped and counted, not cut
    tiny = PromptBuilder(spec, len, budget=len(q) + 2)
    assert tiny.build(query, demos, reserve=3) is None
    assert tiny.counts.queries_too_long == 1 and tiny.counts.too_long_examples == [query.where]


def test_korquad_demonstrations_come_from_the_query_paragraph():
    spec = load_task("korquad")
    ex = read_examples("korquad", FIXTURES / "korquad_dev.json").items
    by_par = {}
    for e in ex:
        by_par.setdefault(e.fields["paragraph"], []).append(e)
    demos = paragraph_demonstrations(spec, 0, ex[0], by_par)
    assert len(demos) == 4 and ex[0] not in demos
    assert all(d.fields["paragraph"] == "0.0" for d in demos)
    short = paragraph_demonstrations(spec, 0, ex[5], by_par)  # the paragraph has one other question
    assert short == [ex[6]]
    b = PromptBuilder(spec, len, budget=10_000)
    p = b.build(ex[5], short, reserve=0)
    assert p.context.startswith(ex[5].fields["context"] + "\n\n질문: 1852년에 어디에서")
    assert p.context.endswith("답변: 바이마르\n질문: 잊혀져 있던 1악장을 부활시킨 사람은?\n답변:")
    assert b.counts.short_demo_sets == 1


def test_task_file_errors_name_the_file(tmp_path):
    f = tmp_path / "t.yaml"
    base = {"task": "t", "format": "nsmc", "output_type": "multiple_choice",
            "doc_to_text": "{{document}}", "doc_to_target": "{{label}}", "metric": "accuracy",
            "doc_to_choice": ["부정", "긍정"]}
    assert parse_task(base, f).doc_to_choice == {0: "부정", 1: "긍정"}
    with pytest.raises(UserError, match=r"t.yaml: unknown key\(s\) \['shots'\]"):
        parse_task({**base, "shots": 3}, f)
    with pytest.raises(UserError, match="metric 'bleu' does not fit"):
        parse_task({**base, "metric": "bleu"}, f)
    with pytest.raises(UserError, match="unknown task 'nope'"):
        load_task("nope")
    spec = parse_task({**base, "doc_to_text": "{{review}}"}, f)
    ex = read_examples("nsmc", FIXTURES / "ratings_test.txt").items[0]
    with pytest.raises(UserError, match=r"t.yaml: template .* uses a field the record at .*ratings_test.txt:2 lacks"):
        PromptBuilder(spec, len, 100).build(ex, [], 0)


def test_channel_scoring_puts_the_label_first(nsmc):
    spec, train, test = nsmc
    ch = spec.replace(scoring="channel", target_delimiter="\n")
    demos = draw_demonstrations(ch, 0, train)[:2]
    assert demo_text(ch, demos[0]) == (("긍정" if demos[0].fields["label"] else "부정") + "\n문장: "
                                       + demos[0].fields["document"] + "\n감정:")
    p = PromptBuilder(ch, len, budget=10_000).build(test[0], demos, reserve=3)
    assert p.context == "".join(demo_text(ch, d) + "\n\n" for d in demos)  # the query comes after
    assert p.query == "문장: 굳 ㅋ\n감정:"


def test_demo_task_files_are_in_the_official_formats(tmp_path):
    from hyperclova.eval.demo import build_demo_tasks

    tasks = build_demo_tasks(tmp_path, n_docs=3000, n_test=40, n_train=20)
    topic, sentiment = load_task(str(tasks["topic"])), load_task(str(tasks["sentiment"]))
    y = read_examples("ynat", tmp_path / "ynat_test.json", labels=tuple(topic.doc_to_choice))
    n = read_examples("nsmc", tmp_path / "ratings_test.txt")
    assert len(y) == 40 and len(read_examples("ynat", tmp_path / "ynat_train.json",
                                              labels=tuple(topic.doc_to_choice))) == 20
    both = n.items + read_examples("nsmc", tmp_path / "ratings_train.txt").items
    labels = [e.fields["label"] for e in both]
    assert len(labels) == 60 and labels.count(0) == labels.count(1)  # balanced, as NSMC
    assert sentiment.scoring == topic.scoring == "channel"
    # held out: generated with another seed than the demo corpus (seed 0)
    assert all(e.fields["id"].startswith("syn1-") for e in n.items)
