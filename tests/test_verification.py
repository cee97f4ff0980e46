import pytest
import torch

from prm_core.data import StepSample
from prm_core.verification import StepScores, Verifier, default_answer_key

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
    monkeypatch.setattr(verifier, "score", lambda samples, rule="min": torch.tensor(scores))


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
    with pytest.raises(ValueError, match="batch_size=0 must be >= 1"):
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


def test_weighted_vote_groups_equal_answers_by_default_answer_key(monkeypatch, verifier):
    samples = _answers("14", "The answer is 14.", "15")
    _fixed_scores(monkeypatch, verifier, [0.3, 0.3, 0.5])
    # 14 gets 0.3 + 0.3 = 0.6 > 0.5 for 15; ungrouped, "15" (0.5) would beat each "14" (0.3)
    assert verifier.weighted_vote(samples) == 14.0


def test_weighted_vote_heavier_single_answer_beats_a_light_pair(monkeypatch, verifier):
    samples = _answers("14", "The answer is 14.", "15")
    _fixed_scores(monkeypatch, verifier, [0.2, 0.2, 0.5])
    assert verifier.weighted_vote(samples) == 15.0  # 0.2 + 0.2 = 0.4 < 0.5


def test_majority_vote_groups_equal_answers_by_default_answer_key(verifier):
    # 14 appears twice in two spellings; 15 appears once: 14 wins 2 to 1
    assert verifier.majority_vote(_answers("15", "14", "The answer is 14.")) == 14.0


def test_majority_vote_ignores_scores(monkeypatch, verifier):
    _fixed_scores(monkeypatch, verifier, [0.0, 0.0, 1.0])
    assert verifier.majority_vote(_answers("7", "7", "8")) == 7.0


def test_majority_vote_empty_list_raises(verifier):
    with pytest.raises(ValueError, match="samples is empty"):
        verifier.majority_vote([])


def test_verifier_custom_answer_key_is_used_for_votes(make_tiny_prm):
    verifier = Verifier(make_tiny_prm(), answer_key=lambda answer: answer)  # raw strings, no grouping
    assert verifier.majority_vote(_answers("15", "14", "The answer is 14.")) == "15"  # three 1-vote ties


# ---------------------------------------------------------------- default_answer_key

ANSWER_KEY_CASES = {
    "bare-integer": ("14", 14.0),
    "sentence": ("The answer is 14.", 14.0),
    "last-number-wins": ("17 - 3 = 14", 14.0),
    "negative": ("It ends at -3.", -3.0),
    "decimal": ("2.50", 2.5),
    "trailing-zero-decimal-equals-integer": ("14.0", 14.0),
    "thousands-separator": ("The answer is 1,000.", 1000.0),
    "list-comma-is-not-a-separator": ("3, 4", 4.0),
    "words-lower-stripped": (" Fourteen ", "fourteen"),
    "none": (None, None),
}


@pytest.mark.parametrize(("answer", "expected"), ANSWER_KEY_CASES.values(), ids=ANSWER_KEY_CASES.keys())
def test_default_answer_key_cases(answer, expected):
    assert default_answer_key(answer) == expected


def test_default_answer_key_thousands_separator_differs_from_zero():
    # Reading only the digits after the comma would make "1,000" vote with "0".
    assert default_answer_key("1,000") != default_answer_key("0")


def test_scoring_throughput_reports_rates_and_their_ratios(make_tiny_prm):
    from prm_core.evaluation import scoring_throughput, throughput_batch_size

    result = scoring_throughput(make_tiny_prm(seed=2), _candidates() * 4, batch_size=8, repeats=1)
    rates = [result[k] for k in ("bare_forward_solutions_per_second", "verifier_solutions_per_second",
                                 "end_to_end_solutions_per_second", "encoding_solutions_per_second")]
    assert all(rate > 0 for rate in rates)
    bare = result["bare_forward_solutions_per_second"]
    assert result["verifier_share_of_bare"] == pytest.approx(result["verifier_solutions_per_second"] / bare)
    assert result["end_to_end_share_of_bare"] == pytest.approx(result["end_to_end_solutions_per_second"] / bare)
    assert (throughput_batch_size("cpu"), throughput_batch_size("cuda")) == (256, 4096)
