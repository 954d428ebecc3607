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


# ---------------------------------------------------------------- the library-backed shared helpers
# utils.evaluation hands generation to transformers' pipeline and log-probabilities to TRL (the labs' exercises
# write both by hand); these tests pin them to a plain hand-written reference, so a change of library behaviour
# or a wrong wrapper shows here rather than as a student's "wrong" answer.


def _hand_written_logps(logits, input_ids, mask, average):
    import torch

    out = []
    for b in range(logits.size(0)):
        terms = [torch.log_softmax(logits[b, t - 1].double(), -1)[input_ids[b, t]].item()
                 for t in range(1, logits.size(1)) if mask[b, t]]
        out.append(sum(terms) / max(len(terms), 1) if average else sum(terms))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("average", [False, True])
def test_completion_logps_is_the_sum_or_mean_over_completion_tokens(average):
    import torch

    from utils.evaluation import completion_logps

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 11, generator=g) * 3
    ids = torch.randint(0, 11, (3, 9), generator=g)
    mask = torch.zeros(3, 9, dtype=torch.long)
    mask[0, 2:6], mask[1, 4:9], mask[2, 1:3] = 1, 1, 1
    before = (logits.clone(), ids.clone())
    got = completion_logps(logits.bfloat16().float(), ids, mask, average)
    want = _hand_written_logps(logits.bfloat16().float(), ids, mask, average)
    assert got.dtype == torch.float32 and got.shape == (3,)
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=0)
    assert torch.equal(before[0], logits) and torch.equal(before[1], ids), "inputs must not change"


def test_generate_replies_matches_a_hand_written_greedy_loop_and_restores_state():
    import torch

    from utils.course_data import load_split
    from utils.evaluation import generate_replies
    from utils.tiny_llama import llama31_tokenizer, tiny_llama31

    tokenizer = llama31_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    model = tiny_llama31(tokenizer, dtype=torch.float32)
    model.train()
    prompts = [ex.prompt() for ex in load_split("test", 3)]
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=5, batch_size=2, progress=False)
    assert model.training and tokenizer.padding_side == "right", "the caller's model mode and padding side are restored"
    model.eval()
    expected = []
    for messages in prompts:  # one prompt at a time: no padding at all
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    assert replies == expected
