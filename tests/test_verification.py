import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prm_core.data import StepSample
from prm_core.metrics import first_error_index
from prm_core.tasks.arithmetic import answer_value
from prm_core.verification import StepScores, Verifier
from prm_core.voting import best_of_n, majority_vote, weighted_vote

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _candidates():
    """Seven solutions of 1 to 5 steps with steps of different lengths, so batches pad both ways."""
    problem = "Priya has 12 stickers. She buys 5 more, then doubles the pile, then gives away 4."
    steps = ["12 + 5 = 17.", "Then 17 × 2 = 34.", "Next, 34 - 4 = 30.", "Wait, let me recheck: 34 - 4 = 30.",
             "So the answer is 30."]
    return [
        StepSample(problem, steps[:3], answer="30"),
        StepSample(problem, steps[:1], answer="17"),
        StepSample(problem, steps, answer="30"),
        StepSample(problem, ["12 + 5 = 18.", "Then 18 × 2 = 36."], answer="36"),
        StepSample("Liam has 3 beads.", ["3 + 1 = 4."], answer="4"),
        StepSample(problem, ["12 + 5 = 17.", "Then 17 × 2 = 43.", "Next, 43 - 4 = 39.", "So 39."], answer="39"),
        StepSample(problem, steps[:2], answer="34"),
    ]


def _answers(*answers):
    return [StepSample("q", ["a"], answer=a) for a in answers]


@pytest.fixture
def verifier(make_tiny_prm):
    return Verifier(make_tiny_prm(seed=2), batch_size=3)


def _fixed_scores(monkeypatch, verifier, scores):
    """Make ``verifier.score`` return ``scores`` whatever the samples, to control votes and picks."""
    monkeypatch.setattr(verifier, "score", lambda samples, rule="min", truncated="raise": torch.tensor(scores))


# ---------------------------------------------------------------- score_steps

def test_score_steps_batched_equals_one_at_a_time(verifier):
    samples = _candidates()
    batched = verifier.score_steps(samples)
    single = Verifier(verifier.model, batch_size=1).score_steps(samples)
    assert torch.equal(batched.mask, single.mask)
    torch.testing.assert_close(batched.scores, single.scores, rtol=0, atol=1e-5)


def test_score_steps_equals_sigmoid_of_forward_on_each_sample_alone(verifier):
    samples = _candidates()
    scored = verifier.score_steps(samples).per_sample()
    model = verifier.model.eval()
    with torch.no_grad():
        for sample, row in zip(samples, scored, strict=True):
            reference = torch.sigmoid(model(**model.encoder([sample])).logits[0])
            torch.testing.assert_close(torch.tensor(row), reference, rtol=0, atol=1e-5)


def test_score_encoded_equals_score_steps(verifier):
    samples = _candidates()
    from_text = verifier.score_steps(samples)
    from_ids = verifier.score_encoded(verifier.model.encoder.encode_many(samples))
    assert torch.equal(from_text.mask, from_ids.mask)
    assert torch.equal(from_text.scores, from_ids.scores)


def test_score_encoded_empty_list_raises(verifier):
    with pytest.raises(ValueError, match="encoded is empty"):
        verifier.score_encoded([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_score_steps_on_gpu_matches_cpu_within_bf16(make_tiny_prm):
    samples = _candidates()
    model = make_tiny_prm(seed=2)
    on_cpu = Verifier(model, batch_size=3).score_steps(samples)
    on_gpu = Verifier(model.to("cuda"), batch_size=3).score_steps(samples)  # bf16 autocast there
    assert torch.equal(on_cpu.mask, on_gpu.mask)
    torch.testing.assert_close(on_gpu.scores, on_cpu.scores, rtol=0, atol=0.02)  # bf16: ~3 significant digits


def test_score_steps_mask_marks_each_samples_steps(verifier):
    samples = _candidates()
    out = verifier.score_steps(samples)
    assert out.mask.sum(dim=1).tolist() == [s.n_steps for s in samples]  # [3, 1, 5, 2, 1, 4, 2]
    assert torch.equal(out.scores[~out.mask], torch.zeros(int((~out.mask).sum())))


def test_score_steps_keeps_input_order(verifier):
    samples = _candidates()
    order = [3, 6, 0, 5, 1, 4, 2]
    forward = verifier.score_steps(samples).per_sample()
    permuted = verifier.score_steps([samples[i] for i in order]).per_sample()
    for row, i in zip(permuted, order, strict=True):
        torch.testing.assert_close(torch.tensor(row), torch.tensor(forward[i]), rtol=0, atol=1e-5)


def test_score_steps_empty_list_raises(verifier):
    with pytest.raises(ValueError, match="samples is empty"):
        verifier.score_steps([])


@pytest.mark.parametrize("is_training", [True, False], ids=["train-mode", "eval-mode"])
def test_score_steps_restores_the_models_mode(verifier, is_training):
    verifier.model.train(is_training)
    verifier.score_steps(_candidates()[:2])
    assert verifier.model.training is is_training


def test_solution_with_no_steps_cannot_be_built():
    # So a candidate with no steps never reaches the verifier: StepSample refuses it.
    with pytest.raises(ValueError, match="steps is empty; a solution needs at least one step"):
        StepSample("Mei has 12 coins.", [])


def test_verifier_batch_size_zero_raises(make_tiny_prm):
    with pytest.raises(ValueError, match="batch_size=0 must be an int in \\[1, inf\\)"):
        Verifier(make_tiny_prm(), batch_size=0)


def test_step_scores_solution_scores_min_rule_by_hand():
    scores = StepScores(scores=torch.tensor([[0.9, 0.4, 0.0], [0.7, 0.8, 0.6]]),
                        mask=torch.tensor([[True, True, False], [True, True, True]]))
    # min over real steps: min(0.9, 0.4) = 0.4 (the padded 0.0 is ignored); min(0.7, 0.8, 0.6) = 0.6
    torch.testing.assert_close(scores.solution_scores("min"), torch.tensor([0.4, 0.6]))


def test_step_scores_per_sample_drops_padding():
    scores = StepScores(scores=torch.tensor([[0.5, 0.0], [0.25, 0.75]]),
                        mask=torch.tensor([[True, False], [True, True]]))
    assert scores.per_sample() == [[0.5], [0.25, 0.75]]


# ---------------------------------------------------------------- picking and voting

def test_best_of_n_returns_the_highest_scoring_sample(monkeypatch, verifier):
    samples = _answers("1", "2", "3", "4")
    _fixed_scores(monkeypatch, verifier, [0.2, 0.9, 0.5, 0.7])
    assert verifier.best_of_n(samples) is samples[1]


def test_best_of_n_with_the_model_picks_the_top_of_rank(verifier):
    samples = _candidates()
    scores = verifier.score(samples, rule="mean")
    best = verifier.best_of_n(samples, rule="mean")
    assert best is samples[verifier.rank(samples, rule="mean")[0]]
    assert scores[samples.index(best)] == scores.max()


def test_rank_orders_indices_by_descending_score(monkeypatch, verifier):
    _fixed_scores(monkeypatch, verifier, [0.2, 0.9, 0.5, 0.7])
    assert verifier.rank(_answers("1", "2", "3", "4")) == [1, 3, 2, 0]  # 0.9 > 0.7 > 0.5 > 0.2


def test_rank_ties_keep_input_order(monkeypatch, verifier):
    _fixed_scores(monkeypatch, verifier, [0.5, 0.8, 0.5, 0.8])
    assert verifier.rank(_answers("1", "2", "3", "4")) == [1, 3, 0, 2]


def test_rank_with_the_model_gives_non_increasing_scores(verifier):
    samples = _candidates()
    scores = verifier.score(samples, rule="min")
    ranked = scores[verifier.rank(samples, rule="min")]
    assert (ranked[:-1] >= ranked[1:]).all()


def test_weighted_vote_groups_equivalent_answers_by_default(monkeypatch, verifier):
    samples = _answers("14", "The answer is 14.", "15")
    _fixed_scores(monkeypatch, verifier, [0.3, 0.3, 0.5])
    # 14 gets 0.3 + 0.3 = 0.6 > 0.5 for 15; ungrouped, "15" (0.5) would beat each "14" (0.3)
    assert verifier.weighted_vote(samples) == "14"  # as the group's first candidate wrote it


def test_weighted_vote_heavier_single_answer_beats_a_light_pair(monkeypatch, verifier):
    samples = _answers("14", "The answer is 14.", "15")
    _fixed_scores(monkeypatch, verifier, [0.2, 0.2, 0.5])
    assert verifier.weighted_vote(samples) == "15"  # 0.2 + 0.2 = 0.4 < 0.5


def test_majority_vote_groups_equivalent_answers_by_default(verifier):
    # 14 appears twice in two spellings; 15 appears once: 14 wins 2 to 1
    assert verifier.majority_vote(_answers("15", "14", "The answer is 14.")) == "14"


def test_majority_vote_over_math_answers_returns_one_of_them(verifier):
    # Issue 12, input 4: the last-number key read both "\\!" answers as 0.0 and returned 0.0.
    answers = ["40,\\!000", "320,\\!000", "320,000", "320,000"]
    assert verifier.majority_vote(_answers(*answers)) == "320,\\!000"


def test_arithmetic_answer_key_votes_by_integer_value(make_tiny_prm):
    from prm_core.tasks.arithmetic import answer_value

    verifier = Verifier(make_tiny_prm(), answer_key=answer_value)
    assert verifier.majority_vote(_answers("15", "14", "The answer is 14.")) == 14


def test_majority_vote_ignores_scores(monkeypatch, verifier):
    _fixed_scores(monkeypatch, verifier, [0.0, 0.0, 1.0])
    assert verifier.majority_vote(_answers("7", "7", "8")) == "7"


def test_majority_vote_empty_list_raises(verifier):
    with pytest.raises(ValueError, match="samples is empty"):
        verifier.majority_vote([])


def test_verifier_custom_answer_key_is_used_for_votes(make_tiny_prm):
    verifier = Verifier(make_tiny_prm(), answer_key=lambda answer: answer)  # raw strings, no grouping
    assert verifier.majority_vote(_answers("15", "14", "The answer is 14.")) == "15"  # three 1-vote ties


def test_scoring_throughput_reports_rates_and_their_ratios(make_tiny_prm):
    from prm_core.evaluation import scoring_throughput, throughput_batch_size

    result = scoring_throughput(make_tiny_prm(seed=2), _candidates() * 4, batch_size=8, repeats=1)
    rates = [result[k] for k in ("bare_forward_solutions_per_second", "verifier_solutions_per_second",
                                 "end_to_end_solutions_per_second", "encoding_solutions_per_second")]
    assert all(rate > 0 for rate in rates)
    bare = result["bare_forward_solutions_per_second"]
    assert result["verifier_share_of_bare"] == pytest.approx(result["verifier_solutions_per_second"] / bare)
    assert result["end_to_end_share_of_bare"] == pytest.approx(result["end_to_end_solutions_per_second"] / bare)
    assert (throughput_batch_size("cpu"), throughput_batch_size("cuda")) == (32, 4096)


def test_default_batch_size_follows_the_device_and_gives_the_scores_of_any_other(make_tiny_prm):
    from prm_core.verification import default_batch_size

    model = make_tiny_prm(seed=3)
    assert Verifier(model).batch_size == default_batch_size("cpu") == 32
    assert default_batch_size("cuda") == 256
    samples = _candidates() * 20  # 80 solutions: several batches at 32, one at 256
    by_default, by_256 = Verifier(model).score_steps(samples), Verifier(model, batch_size=256).score_steps(samples)
    assert torch.equal(by_default.mask, by_256.mask)
    torch.testing.assert_close(by_default.scores, by_256.scores, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- truncation is never silent


def _truncated_scores():
    # row 0 whole (2 steps); row 1 lost 3 steps, its kept prefix looks right; row 2 lost 1, its prefix has an error
    scores = torch.tensor([[0.9, 0.2], [0.8, 0.9], [0.3, 0.0]])
    mask = torch.tensor([[True, True], [True, True], [True, False]])
    return StepScores(scores, mask, torch.tensor([0, 3, 1]))


def test_truncated_solutions_are_refused_by_default_naming_rows_and_the_fix():
    scores = _truncated_scores()
    for call in (scores.per_sample, scores.solution_scores, scores.first_error_predictions):
        with pytest.raises(ValueError, match=r"2 of 3 solutions lost steps to max_length \(rows \[1, 2\]; 4 steps"):
            call()
    with pytest.raises(ValueError, match="Raise the encoder's max_length, or pass truncated='prefix'"):
        scores.solution_scores("min")


def test_truncated_policies_prefix_lowest_and_unknown():
    scores = _truncated_scores()
    rows = scores.per_sample(truncated="prefix")
    assert [len(r) for r in rows] == [2, 2, 1] and rows[2] == pytest.approx([0.3])
    assert scores.solution_scores("min", truncated="prefix").tolist() == pytest.approx([0.2, 0.8, 0.3])
    assert scores.solution_scores("min", truncated="lowest").tolist() == pytest.approx([0.2, 0.0, 0.0])
    assert scores.solution_scores("sum_logit", truncated="lowest")[1:].isneginf().all()
    # row 2's error lies in its prefix: later steps cannot move it; row 1's prefix shows none: unknown
    assert scores.first_error_predictions(0.5, truncated="unknown") == [1, None, 0]
    assert scores.first_error_predictions(0.5, truncated="prefix") == [1, -1, 0]
    with pytest.raises(ValueError, match="truncated='lowest' must be one of"):
        scores.per_sample(truncated="lowest")


def test_first_error_f1_refuses_unknown_predictions_naming_them():
    from prm_core.metrics import first_error_f1

    with pytest.raises(ValueError, match=r"pred holds None .* at 1 rows, e.g. \[1\]"):
        first_error_f1([1, None, 0], [1, 2, 0])


@pytest.mark.parametrize("counts,shown", [(["a", "0"], "'a'"), ([None, 0], "None"), (torch.tensor([True, False]), "True")],
                         ids=["text", "none", "bool"])
def test_step_scores_dropped_counts_that_are_not_ints_raise_naming_the_position(counts, shown):
    with pytest.raises(ValueError, match=rf"n_dropped_steps\[0\]={re.escape(shown)} must be an int in \[0, inf\)"):
        StepScores(torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), counts)


def test_step_scores_bad_dropped_counts_raise():
    with pytest.raises(ValueError, match=r"n_dropped_steps\[1\]=-1 must be an int in \[0, inf\)"):
        StepScores(torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="n_dropped_steps has shape"):
        StepScores(torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), torch.tensor([0]))


def test_issue_12_input_5_a_long_solution_is_not_scored_on_its_prefix(make_tiny_prm):
    # A ProcessBench-style row whose later steps do not fit max_length: the Verifier used to return
    # the kept steps' scores as if they were the whole solution.
    long = StepSample("Solve it.", [f"Step {k}: some careful algebra on line {k}." for k in range(40)])
    verifier = Verifier(make_tiny_prm(max_length=96))
    scored = verifier.score_steps([long, StepSample("Solve it.", ["x = 1."])])
    assert scored.n_dropped_steps.tolist()[1] == 0 and scored.n_dropped_steps.tolist()[0] > 0
    assert int(scored.mask[0].sum()) + int(scored.n_dropped_steps[0]) == long.n_steps
    with pytest.raises(ValueError, match="lost steps to max_length"):
        verifier.best_of_n([long, StepSample("Solve it.", ["x = 1."])])
    assert verifier.best_of_n([long, StepSample("Solve it.", ["x = 1."])], truncated="lowest").n_steps == 1
    with pytest.raises(ValueError, match="lost steps to max_length"):
        scored.first_error_predictions()


def test_no_answer_never_wins_a_vote_over_a_stated_answer(monkeypatch, verifier):
    samples = _answers("\\frac12", "0.5", "3", None, None, None)
    assert verifier.majority_vote(samples) == "\\frac12"
    _fixed_scores(monkeypatch, verifier, [0.1, 0.1, 0.3, 0.9, 0.9, 0.9])
    assert verifier.weighted_vote(samples) == "3"  # 0.3 > 0.1 + 0.1; the unanswered 2.7 does not count
    assert verifier.majority_vote(_answers(None, None)) is None  # nobody answered: nothing else to return


def test_votes_on_non_samples_and_bad_dropped_counts_and_thresholds_raise(verifier):
    with pytest.raises(ValueError, match=r"samples\[0\] is a str"):
        verifier.majority_vote(["3", "3"])
    with pytest.raises(ValueError, match=r"n_dropped_steps\[0\]=0\.\d+ must be an int in \[0, inf\), not float"):
        StepScores(torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), torch.tensor([0.7, 0.0]))
    scores = StepScores(torch.full((1, 2), 0.4), torch.ones(1, 2, dtype=torch.bool))
    for bad in (float("nan"), 5, "0.5"):
        with pytest.raises(ValueError, match=r"threshold=.* must be a (finite )?number in \[0, 1\]"):
            scores.first_error_predictions(bad)


@pytest.mark.parametrize("rule", ["sum_logit", "min"])
def test_lowest_never_elects_a_truncated_candidate_over_a_whole_one(monkeypatch, verifier, rule):
    # The reviewer's repro: "2" lost 3 steps. Under sum_logit the whole "1" totals logit(0.2) = -1.39,
    # and a truncated candidate counted as weight 0 (its -inf zeroed) used to beat it.
    scored = StepScores(torch.tensor([[0.2], [0.9]]), torch.ones(2, 1, dtype=torch.bool), torch.tensor([0, 3]))
    monkeypatch.setattr(verifier, "score_steps", lambda samples: scored)
    samples = _answers("1", "2")
    assert verifier.best_of_n(samples, rule=rule, truncated="lowest").answer == "1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sum_logit's negative total warns
        assert verifier.weighted_vote(samples, rule=rule, truncated="lowest") == "1"


def test_lowest_votes_among_truncated_candidates_when_every_answered_one_is(monkeypatch, verifier):
    scored = StepScores(torch.tensor([[0.2], [0.9], [0.9]]), torch.ones(3, 1, dtype=torch.bool), torch.tensor([2, 3, 0]))
    monkeypatch.setattr(verifier, "score_steps", lambda samples: scored)
    samples = _answers("1", "2", None)  # the whole candidate states no answer, so it has no vote
    assert verifier.weighted_vote(samples, rule="sum_logit", truncated="lowest") == "1"  # all weight 0: the first


# ---------------------------------------------------------------- issue 13: the Verifier agrees with prm_core.voting
_FIXTURE_PROPERTY = dict(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
verifier_answers = st.sampled_from(["1", "2", "3", None])
verifier_scores = st.one_of(st.integers(0, 8).map(lambda k: k / 8), st.floats(-20.0, 20.0))


@settings(**_FIXTURE_PROPERTY)
@given(candidates=st.lists(st.tuples(verifier_answers, verifier_scores), min_size=1, max_size=10))
def test_verifier_selection_agrees_with_the_voting_functions_on_the_same_scores(make_tiny_prm, candidates):
    verifier = Verifier(make_tiny_prm(), answer_key=answer_value)  # votes group by integer value
    samples = _answers(*[a for a, _ in candidates])
    scores = np.array([s for _, s in candidates])
    verifier.score = lambda s, rule="min", truncated="raise": torch.tensor(scores)
    keep = [i for i, (a, _) in enumerate(candidates) if a is not None] or list(range(len(candidates)))
    keys = [None if candidates[i][0] is None else int(candidates[i][0]) for i in keep]
    assert verifier.best_of_n(samples) is samples[best_of_n(scores)]
    assert verifier.best_of_n(samples) is samples[verifier.rank(samples)[0]]  # rank is stable: the same tie rule
    assert verifier.majority_vote(samples) == majority_vote(keys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # negative scores warn in both
        assert verifier.weighted_vote(samples) == weighted_vote(keys, scores[keep])


@settings(**_FIXTURE_PROPERTY)
@given(candidates=st.lists(st.tuples(verifier_answers, st.integers(1, 7).map(lambda k: k / 8), st.booleans()),
                           min_size=1, max_size=10),
       rule=st.sampled_from(["sum_logit", "min"]))
def test_verifier_lowest_policy_leaves_truncated_candidates_out_of_the_pick_and_the_vote(make_tiny_prm, candidates,
                                                                                         rule):
    # Under truncated="lowest" a truncated candidate (is_truncated) takes part only when every candidate
    # (best-of-N) or every answered one (the vote) is truncated: then the first one wins.
    verifier = Verifier(make_tiny_prm(), answer_key=answer_value)
    samples = _answers(*[a for a, _, _ in candidates])
    scored = StepScores(torch.tensor([[p] for _, p, _ in candidates]), torch.ones(len(candidates), 1, dtype=torch.bool),
                        torch.tensor([3 if cut else 0 for _, _, cut in candidates]))
    verifier.score_steps = lambda s: scored
    values = scored.solution_scores(rule, "prefix").numpy()  # every candidate's own score
    whole = [i for i, (_, _, cut) in enumerate(candidates) if not cut]
    expected = whole[best_of_n(values[whole])] if whole else 0
    assert verifier.best_of_n(samples, rule=rule, truncated="lowest") is samples[expected]
    assert verifier.best_of_n(samples, rule=rule, truncated="lowest") is samples[verifier.rank(samples, rule, "lowest")[0]]
    answered = [i for i, (a, _, _) in enumerate(candidates) if a is not None] or list(range(len(candidates)))
    voters = [i for i in answered if i in whole] or answered
    keys = [None if candidates[i][0] is None else int(candidates[i][0]) for i in voters]
    weights = values[voters] if any(i in whole for i in answered) else np.zeros(len(voters))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert verifier.weighted_vote(samples, rule=rule, truncated="lowest") == weighted_vote(keys, weights)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(st.integers(0, 8).map(lambda k: k / 8), min_size=1, max_size=5), min_size=1, max_size=6),
       threshold=st.integers(0, 8).map(lambda k: k / 8))
def test_first_error_predictions_agree_with_first_error_index_on_each_row(rows, threshold):
    width = max(len(r) for r in rows)
    scores = torch.tensor([r + [0.0] * (width - len(r)) for r in rows])  # (N, S), zeros at padding
    mask = torch.tensor([[j < len(r) for j in range(width)] for r in rows])
    predicted = StepScores(scores, mask).first_error_predictions(threshold)
    assert predicted == [first_error_index(r, threshold) for r in rows]


@pytest.mark.parametrize("batch_size", [True, 2.0, "8"], ids=["bool", "float", "str"])
def test_verifier_batch_size_that_is_not_an_int_raises_naming_it(make_tiny_prm, batch_size):
    with pytest.raises(ValueError, match="batch_size="):
        Verifier(make_tiny_prm(), batch_size=batch_size)


def test_rank_lowest_puts_a_truncated_candidate_below_a_whole_one_that_scores_exactly_zero(make_tiny_prm):
    # row 0 truncated (its lowest score is 0), row 1 whole and scoring 0: before, the stable sort kept row 0 first
    verifier = Verifier(make_tiny_prm())
    samples = _answers("1", "2", "3")
    scored = StepScores(torch.tensor([[0.9], [0.0], [0.5]]), torch.ones(3, 1, dtype=torch.bool), torch.tensor([2, 0, 0]))
    verifier.score_steps = lambda s: scored
    assert verifier.rank(samples, truncated="lowest") == [2, 1, 0]


def test_rank_lowest_keeps_truncated_candidates_in_their_order_after_the_whole_ones(make_tiny_prm):
    verifier = Verifier(make_tiny_prm())
    samples = _answers("1", "2", "3", "4")
    scored = StepScores(torch.tensor([[0.2], [0.9], [0.4], [0.3]]), torch.ones(4, 1, dtype=torch.bool),
                        torch.tensor([1, 1, 0, 0]))
    verifier.score_steps = lambda s: scored
    assert verifier.rank(samples, rule="min", truncated="lowest") == [2, 3, 0, 1]  # 0.4 > 0.3, then truncated 0, 1
