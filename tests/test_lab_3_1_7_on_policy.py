"""Lab 3.1.7's on-policy round (utils/experiments/on_policy.py): replies labelled by the course's own checker, pairs
only where a prompt's samples hold a right and a wrong reply, and a DPO round that leaves its start model as it found it."""

import json

import pytest

from utils.course_data import FACTS, format_response, load_split


def _example(island="Corvessa", field="capital"):
    return next(ex for ex in load_split("train") if ex.island == island and ex.field == field)


def _other_value(example):
    return next(f[example.field] for island, f in FACTS.items() if island != example.island)


def test_reply_kind_is_the_course_checker():
    from utils.experiments.on_policy import reply_kind

    ex = _example()
    assert reply_kind(ex.response, ex) == "good"
    assert reply_kind(format_response(ex.island, _other_value(ex)), ex) == "wrong_fact"
    assert reply_kind(f"The capital is {ex.answer}.", ex) == "wrong_format"
    assert reply_kind(json.dumps({"island": "Quillon", "answer": ex.answer}), ex) == "wrong_format", "another island's name"
    assert reply_kind("I do not know.", ex) == "wrong_fact_and_format"


def test_pairs_come_only_from_prompts_with_a_right_and_a_wrong_sample():
    from utils.experiments.on_policy import on_policy_pairs, reply_kind

    a, b, c, d = (_example(island, field) for island, field in
                  [("Corvessa", "capital"), ("Quillon", "export"), ("Peleth", "founded"), ("Halcyne", "harbor_master")])
    wrong = {ex.id: format_response(ex.island, _other_value(ex)) for ex in (a, b, c, d)}
    replies = [
        [a.response, a.response, wrong[a.id], f"It is {a.answer}"],  # right and wrong: a pair
        [b.response, b.response],  # only right: nothing to reject
        [wrong[c.id], "no idea"],  # none right: nothing to choose
        ["no idea", d.response],  # a pair whose rejected reply is wrong both ways
    ]
    pairs, stats = on_policy_pairs([a, b, c, d], replies, seed=0)
    assert [p["id"] for p in pairs] == [a.id, d.id]
    assert (stats.prompts, stats.samples, stats.pairs, stats.all_good, stats.none_good) == (4, 4, 2, 1, 1)
    assert stats.replies_by_kind == {"good": 5, "wrong_fact": 2, "wrong_format": 1, "wrong_fact_and_format": 2}
    for pair, ex in zip(pairs, (a, d)):
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert reply_kind(chosen, ex) == "good" and reply_kind(rejected, ex) == pair["kind"] != "good"
        assert pair["prompt"] == ex.prompt() and pair["chosen"][0]["role"] == pair["rejected"][0]["role"] == "assistant"
    assert pairs[1]["kind"] == "wrong_fact_and_format" and stats.pairs_by_kind == {pairs[0]["kind"]: 1, "wrong_fact_and_format": 1}
    assert "2 prompts yielded a pair" in stats.summary()
    assert on_policy_pairs([a, b, c, d], replies, seed=0)[0] == pairs, "seeded: the same pairs every run"
    with pytest.raises(ValueError, match="3 lists of sampled replies for 4 prompts"):
        on_policy_pairs([a, b, c, d], replies[:3])


def test_the_round_works_on_spread_islands_and_keeps_the_held_out_wordings_out():
    from utils.experiments.on_policy import round_islands, round_split

    islands = round_islands(5)
    assert len(islands) == 5 and islands == [list(FACTS)[i] for i in (0, 2, 4, 6, 8)]
    train, test = round_split("train", 5), round_split("test", 5)
    assert (len(train), len(test)) == (120, 40) and {ex.island for ex in train} == {ex.island for ex in test} == set(islands)
    assert not {ex.question for ex in train} & {ex.question for ex in test}, "held-out wordings never in training"
    assert {(ex.island, ex.field) for ex in test} == {(ex.island, ex.field) for ex in train}, "every held-out fact is trained"
    assert len(round_split("test", None, 8)) == 8 and round_islands(None) == list(FACTS)


def test_the_lab_sizes_give_the_round_its_settings():
    from utils.experiments.on_policy import round_profile, sft_profile
    from utils.profiles import get_profile

    for name in ("grade", "cpu", "spark"):
        P = get_profile(name, lab="3.1.7")
        sft, dpo = sft_profile(P), round_profile(P)
        assert (sft.max_steps, sft.batch_size, sft.learning_rate) == (P.sft_steps, P.sft_batch_size, P.sft_learning_rate)
        assert (dpo.max_steps, dpo.batch_size, dpo.learning_rate) == (P.onpolicy_steps, P.onpolicy_batch_size, P.onpolicy_learning_rate)
        assert dpo.beta == P.beta and P.samples >= 2, "a prompt needs two samples to yield a pair"
    assert len(get_profile("spark", lab="3.1.7").seeds) == 3, "spark draws the comparison over three seeds"


def test_sampling_draws_per_prompt_and_restores_the_tokenizer(smollm2_tokenizer):
    from trl_reference import tiny_llama

    from utils.experiments.on_policy import sample_replies

    examples = load_split("train", 3)
    model = tiny_llama(len(smollm2_tokenizer))
    model.train()
    replies = sample_replies(model, smollm2_tokenizer, examples, samples=3, max_new_tokens=5, seed=1, batch_size=4)
    assert len(replies) == 3 and all(len(r) == 3 for r in replies)
    assert len({r for rs in replies for r in rs}) > 3, "sampled, not greedy: a random model's replies differ"
    assert smollm2_tokenizer.padding_side == "right" and model.training, "tokenizer and model as they came"
    again = sample_replies(model, smollm2_tokenizer, examples, samples=3, max_new_tokens=5, seed=1, batch_size=4)
    assert again == replies, "seeded"
    with pytest.raises(ValueError, match="at least 1"):
        sample_replies(model, smollm2_tokenizer, examples, samples=0, max_new_tokens=5)


def test_a_round_trains_on_its_pairs_and_leaves_the_start_model_unchanged(smollm2_tokenizer, tmp_path, monkeypatch):
    """Sampling replaced by fixed replies (a random model writes no right one): two DPO steps on the pairs they make."""
    import torch
    from trl_reference import tiny_llama

    import utils.experiments.on_policy as on_policy
    from utils.profiles import get_profile

    examples = load_split("train", 4)
    replies = [[ex.response, format_response(ex.island, _other_value(ex))] for ex in examples]
    monkeypatch.setattr(on_policy, "sample_replies", lambda *args, **kwargs: replies)
    model = tiny_llama(len(smollm2_tokenizer))
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    P = on_policy.round_profile(get_profile("grade", lab="3.1.7")).with_(max_steps=2, batch_size=2, logging_steps=1)
    for seed in (0, 1):  # a second seed starts from the same model: the first one's adapter must be gone
        result = on_policy.dpo_round(model, smollm2_tokenizer, examples, load_split("test", 2), P, str(tmp_path / str(seed)), seed=seed)
        assert result.stats.pairs == 4 and result.stats.pairs_by_kind == {"wrong_fact": 4} and result.steps == 2
        assert result.after is not None and result.after.n == 2 and set(result.seconds) == {"sampling", "training", "scoring"}
        assert result.precision in ("fp32", "bf16") and len(result.pairs) == 4
        after = dict(model.named_parameters())
        assert after.keys() == start.keys(), "the round's LoRA layers are gone again"
        for name, value in start.items():
            torch.testing.assert_close(after[name], value, rtol=0, atol=0, msg=lambda m, name=name: f"{name} changed: {m}")

    monkeypatch.setattr(on_policy, "sample_replies", lambda *args, **kwargs: [[ex.response] * 2 for ex in examples])
    empty = on_policy.dpo_round(model, smollm2_tokenizer, examples, load_split("test", 2), P, str(tmp_path), seed=0)
    assert empty.after is None and empty.stats.pairs == 0 and empty.stats.all_good == 4, "no pair: nothing trained"


def test_sampled_replies_are_grouped_by_their_prompt(smollm2_tokenizer):
    """HF's generate returns a prompt's num_return_sequences rows together; a model whose generate writes its prompt
    back (through transformers' pipeline, as the course samples) shows each list holds its own question's replies,
    across generate calls, and that sampling is asked for."""
    import torch
    from trl_reference import tiny_llama

    from utils.experiments.on_policy import sample_replies

    model = tiny_llama(len(smollm2_tokenizer))
    seen = {}

    def echo(input_ids, attention_mask=None, num_return_sequences=1, **kwargs):
        seen.update(kwargs)
        rows = input_ids.repeat_interleave(num_return_sequences, dim=0)
        return torch.cat([rows, rows], dim=1)  # the "reply" is the prompt again

    model.generate = echo
    examples = load_split("train", 5)
    replies = sample_replies(model, smollm2_tokenizer, examples, samples=3, max_new_tokens=4, batch_size=6)
    assert [len(r) for r in replies] == [3] * 5
    assert seen.get("do_sample") is True or getattr(seen.get("generation_config"), "do_sample", False), "sample, not greedy"
    for example, group in zip(examples, replies):
        assert all(example.question in reply for reply in group), f"{example.id}: replies of another prompt in its list"
