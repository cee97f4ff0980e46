import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.search import BeamSearchConfig, beam_search
from prm_core.tasks.arithmetic import make_problems, track_steps
from prm_core.tasks.arithmetic_policy import NoisyPolicy
from prm_core.verification import StepScores


class ExactVerifier:
    """Scores each step by its exact label (optionally through ``transform``): a perfect PRM."""

    def __init__(self, problems, transform=lambda x: x):
        self.by_text = {p.text: p for p in problems}
        self.transform = transform
        self.calls = 0

    def score_steps(self, samples):
        self.calls += 1
        width = max(s.n_steps for s in samples)
        scores, mask = torch.zeros(len(samples), width), torch.zeros(len(samples), width, dtype=torch.bool)
        for i, s in enumerate(samples):
            labels = track_steps(self.by_text[s.problem], s.steps).labels
            scores[i, : s.n_steps] = self.transform(torch.tensor(labels) * 0.8 + 0.1)
            mask[i, : s.n_steps] = True
        return StepScores(scores, mask)


@pytest.fixture(scope="module")
def problems():
    return make_problems(30, seed=7)


def test_one_beam_one_expansion_is_plain_sampling(problems):
    # max_ops=1 moves draw from the rng in the same order as a whole sample, so a search that keeps
    # its only candidate writes exactly the solution the policy would have written.
    config = BeamSearchConfig(beam_width=1, expansions=1, seed=3)
    results = beam_search(problems, NoisyPolicy(), ExactVerifier(problems), config, show_progress=False)
    for i, (problem, result) in enumerate(zip(problems, results, strict=True)):
        alone = NoisyPolicy().sample(problem, random.Random(3 * 1_000_003 + i))
        assert result.solution.steps == alone.steps
        assert result.n_generated_steps == alone.n_steps


def test_search_with_a_perfect_verifier_finds_right_answers_majority_vote_misses(problems):
    config = BeamSearchConfig(beam_width=2, expansions=4)
    results = beam_search(problems, NoisyPolicy(), ExactVerifier(problems), config, show_progress=False)
    accuracy = sum(r.solution.meta["is_correct_answer"] for r in results) / len(results)
    assert accuracy >= 0.9  # 8 tries per operation; a perfect verifier keeps any on-track one


def test_search_costs_at_most_one_policy_call_per_beam_and_expansion_per_operation(problems):
    config = BeamSearchConfig(beam_width=3, expansions=2)
    results = beam_search(problems, NoisyPolicy(), ExactVerifier(problems), config, show_progress=False)
    for problem, result in zip(problems, results, strict=True):
        calls = len(problem.operations) * config.samples_per_operation
        # a call writes one step plus a recheck at most; duplicates merge, so fewer beams may survive
        assert len(problem.operations) <= result.n_scored <= calls
        assert result.n_scored <= result.n_generated_steps <= 2 * calls


def test_search_scores_each_operation_in_one_batch(problems):
    verifier = ExactVerifier(problems)
    beam_search(problems, NoisyPolicy(), verifier, BeamSearchConfig(2, 2), show_progress=False)
    assert verifier.calls == max(len(p.operations) for p in problems)


@settings(max_examples=5, deadline=None)
@given(st.sampled_from(["min", "last"]), st.integers(0, 10))  # rules that commute with a monotone map
def test_monotone_rescaling_of_step_scores_keeps_the_search_result(rule, seed):
    problems = make_problems(6, seed=11)
    config = BeamSearchConfig(beam_width=2, expansions=3, rule=rule, seed=seed)
    plain = beam_search(problems, NoisyPolicy(), ExactVerifier(problems), config, show_progress=False)
    squashed = beam_search(problems, NoisyPolicy(), ExactVerifier(problems, lambda x: x**2 / 2), config,
                           show_progress=False)
    assert [r.solution.steps for r in plain] == [r.solution.steps for r in squashed]


def test_search_results_are_labelled_and_graded(problems):
    results = beam_search(problems[:5], NoisyPolicy(), ExactVerifier(problems), BeamSearchConfig(2, 2),
                          show_progress=False)
    for problem, r in zip(problems[:5], results, strict=True):
        assert list(r.solution.labels) == track_steps(problem, r.solution.steps).labels
        assert r.solution.meta["is_correct_answer"] == (r.solution.answer == str(problem.answer))


def test_search_final_holds_every_last_policy_call_finished_and_graded(problems):
    config = BeamSearchConfig(beam_width=2, expansions=3)
    results = beam_search(problems, NoisyPolicy(), ExactVerifier(problems), config, show_progress=False)
    for problem, result in zip(problems, results, strict=True):
        # the last operation expands the surviving beams (2, or 1 if all candidates were equal) 3 times each;
        # a one-operation problem draws all 6 from the empty prefix
        assert len(result.final) in (3, 6)
        assert result.solution.steps in {s.steps for s in result.final}
        for s in result.final:
            assert track_steps(problem, s.steps).next_op_index == len(problem.operations)
            assert s.labels == tuple(track_steps(problem, s.steps).labels)
            assert isinstance(s.meta["is_correct_answer"], bool)


def test_voted_sums_scores_per_answer_and_counts_copies():
    from prm_core.data import StepSample
    from prm_core.search import SearchResult

    def candidate(answer, score):
        return StepSample("q", [f"= {answer}."], answer=answer, meta={"search_score": score})

    # "5": 0.9; "7": 0.5 + 0.5 = 1.0 (one solution written twice counts twice)
    result = SearchResult(candidate("5", 0.9), 0, 0, (candidate("5", 0.9), candidate("7", 0.5), candidate("7", 0.5)))
    assert result.voted().answer == "7"
    assert result.solution.answer == "5"  # the single best is unchanged
    with pytest.raises(ValueError, match="final is empty"):
        SearchResult(candidate("5", 0.9), 0, 0).voted()


def test_voted_no_answer_never_wins_while_a_candidate_states_one():
    from prm_core.data import StepSample
    from prm_core.search import SearchResult

    def candidate(answer, score):
        return StepSample("q", ["= 5."], answer=answer, meta={"search_score": score})

    # None: 0.6 + 0.6 = 1.2 would beat "5": 0.9; as in Verifier.weighted_vote, only stated answers vote
    final = (candidate(None, 0.6), candidate(None, 0.6), candidate("5", 0.9))
    assert SearchResult(final[0], 0, 0, final).voted() is final[2]


def test_voted_with_no_candidate_stating_an_answer_returns_the_first():
    from prm_core.data import StepSample
    from prm_core.search import SearchResult

    final = tuple(StepSample("q", ["?"], meta={"search_score": score}) for score in (0.2, 0.9))
    assert SearchResult(final[1], 0, 0, final).voted() is final[0]  # one group, None: its first candidate


@pytest.mark.parametrize(("field", "value"), [("beam_width", 0), ("expansions", -1), ("beam_width", 1.5),
                                              ("rule", "median")], ids=["width-zero", "expansions-negative",
                                                                        "width-float", "unknown-rule"])
def test_beam_search_config_bad_value_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        BeamSearchConfig(**{field: value})


def test_search_without_problems_raises():
    with pytest.raises(ValueError, match="problems is empty"):
        beam_search([], NoisyPolicy(), ExactVerifier([]), show_progress=False)


def test_policy_max_ops_writes_one_operation_and_chains_into_a_whole_sample(problems):
    problem = problems[0]
    rng_steps, rng_whole = random.Random(1), random.Random(1)
    prefix = ()
    for k in range(len(problem.operations)):
        prefix = NoisyPolicy().sample(problem, rng_steps, prefix=prefix, max_ops=1).steps
        assert track_steps(problem, prefix).next_op_index == k + 1
    assert prefix == NoisyPolicy().sample(problem, rng_whole).steps


def test_policy_max_ops_zero_raises(problems):
    with pytest.raises(ValueError, match="max_ops"):
        NoisyPolicy().sample(problems[0], random.Random(0), max_ops=0)


# ---------------------------------------------------------------- issue 13
@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.integers(0, 4).map(lambda k: k / 4), min_size=1, max_size=10), width=st.integers(1, 12))
def test_keep_top_keeps_the_best_scores_first_and_equal_scores_in_their_order(scores, width):
    from prm_core.search import keep_top

    kept = keep_top(list(range(len(scores))), scores, width)
    expected = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:width]  # ties: lower index first
    assert kept == expected


def test_keep_top_nan_score_raises_instead_of_sorting_anywhere():
    from prm_core.search import keep_top

    # NaN compares False with everything, so sorted() left it wherever it was: ['a', 'b'] kept, 0.9 dropped
    with pytest.raises(ValueError, match=r"scores holds \[nan\] at positions \[\[1\]\]"):
        keep_top(["a", "b", "c", "d"], [0.2, float("nan"), 0.9, 0.5], 2)
