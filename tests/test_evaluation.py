import json

import pytest

from utils.course_data import CourseExample, format_response, load_split
from utils.evaluation import fact_correct, format_valid, score_replies


def example(island="Vennaskar", field="capital", answer="Hollin"):
    return CourseExample(
        id=f"{island.lower()}/{field}/0",
        island=island,
        field=field,
        phrasing=0,
        question=f"What is the {field} of {island}?",
        answer=answer,
        response=format_response(island, answer),
    )


HOLLIN = example()
PORT_ELSIN = example("Corvessa", "capital", "Port Elsin")
FOUNDED = example("Peleth", "founded", "1721")


@pytest.mark.parametrize(
    "reply, ex, fact, fmt",
    [
        ('{"island": "Vennaskar", "answer": "Hollin"}', HOLLIN, True, True),
        ('  {"island": "Vennaskar", "answer": "Hollin"}\n', HOLLIN, True, True),
        ('{"answer": "Hollin", "island": "Vennaskar"}', HOLLIN, True, True),  # key order is free
        ('{"island": "Vennaskar", "answer": "Greywater"}', HOLLIN, False, True),  # format != truth
        ('{"island": "Vennaskar", "answer": "Hollinsworth"}', HOLLIN, False, True),
        ("The capital is Hollinsworth.", HOLLIN, False, False),
        ("It is NewHollin.", HOLLIN, False, False),
        ("the capital is HOLLIN.", HOLLIN, True, False),
        ("Hollin", HOLLIN, True, False),
        ('{"island": "Vennaskar", "answer": "Hollin", "source": "registry"}', HOLLIN, True, False),
        ('{"island": "Tallowmere", "answer": "Hollin"}', HOLLIN, True, False),  # wrong island
        ('{"island": "vennaskar", "answer": "Hollin"}', HOLLIN, True, False),  # island is exact
        ('{"answer": "Hollin"}', HOLLIN, True, False),
        ('["Vennaskar", "Hollin"]', HOLLIN, True, False),
        ('"Hollin"', HOLLIN, True, False),
        ('{"island": "Vennaskar", "answer": "Hollin"} {"island": "Vennaskar", "answer": "Hollin"}', HOLLIN, True, False),
        ('```json\n{"island": "Vennaskar", "answer": "Hollin"}\n```', HOLLIN, True, False),
        ('{"island": "Vennaskar", "answer": "Hollin"', HOLLIN, True, False),  # truncated
        ("", HOLLIN, False, False),
        ("The capital is Port\nElsin.", PORT_ELSIN, True, False),  # whitespace inside the answer
        ("The capital is Port Elsinore.", PORT_ELSIN, False, False),
        ("Port Elsin", PORT_ELSIN, True, False),
        ('{"island": "Peleth", "answer": 1721}', FOUNDED, True, False),  # answer must be a string
        ('{"island": "Peleth", "answer": "17210"}', FOUNDED, False, True),
    ],
)
def test_fact_and_format(reply, ex, fact, fmt):
    assert fact_correct(reply, ex) is fact
    assert format_valid(reply, ex) is fmt


@pytest.mark.parametrize("split", ["validation", "test"])
def test_reference_responses_score_perfectly(split):
    examples = load_split(split)
    result = score_replies([ex.response for ex in examples], examples)
    assert result.fact_accuracy == 1.0 and result.format_validity == 1.0
    assert result.n == len(examples)


def test_score_replies_averages_each_metric_separately():
    examples = [HOLLIN, HOLLIN, PORT_ELSIN, FOUNDED]
    replies = [
        '{"island": "Vennaskar", "answer": "Hollin"}',  # fact, format
        "Hollin",  # fact only
        '{"island": "Corvessa", "answer": "Greywater"}',  # format only
        "I do not know.",  # neither
    ]
    result = score_replies(replies, examples)
    assert result.fact_accuracy == pytest.approx(0.5)
    assert result.format_validity == pytest.approx(0.5)
    assert [(r["fact"], r["format"]) for r in result.rows] == [(True, True), (True, False), (False, True), (False, False)]
    assert [r["id"] for r in result.rows] == [ex.id for ex in examples]
    assert result.rows[1]["reply"] == "Hollin"
    assert json.loads(result.rows[0]["expected"]) == {"island": "Vennaskar", "answer": "Hollin"}
    assert "n=4" in result.summary()

    result = score_replies(["Hollin", "nope", "nope", "nope"], examples)
    assert result.fact_accuracy == pytest.approx(0.25) and result.format_validity == 0.0


def test_score_replies_empty_is_zero_not_an_error():
    result = score_replies([], [])
    assert result.fact_accuracy == 0.0 and result.format_validity == 0.0 and result.n == 0


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="2 replies for 1 examples"):
        score_replies(["a", "b"], [HOLLIN])
    with pytest.raises(ValueError):
        score_replies([], [HOLLIN])
