"""PRM-guided step-level beam search over the policy.

Best-of-N spends its budget on whole solutions and judges them at the end; a step-level search
spends the same budget one step at a time, and lets the PRM drop a partial solution as soon as a
step looks wrong. At each operation, every kept partial solution is extended ``expansions`` times
by the policy, the PRM scores every extension, and the ``beam_width`` best (by an aggregation rule
over their step scores so far) are kept. The first operation extends the empty solution
``beam_width * expansions`` times, so every operation costs the same number of policy calls:
``beam_width * expansions`` per operation, the same as best-of-N with ``N = beam_width * expansions``.
Extensions with identical text are scored once and kept once, so when the policy repeats itself
fewer beams survive and the search spends less than that budget; ``SearchResult`` counts what it spent.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prm_core.aggregation import AGGREGATIONS
from prm_core.checks import check_bool, check_choice, check_int, check_real_array, check_seed
from prm_core.config_checks import check_fields
from prm_core.data import StepSample
from prm_core.tasks.arithmetic import ArithmeticProblem, graded_answer, parse_step, track_steps
from prm_core.verification import Verifier
from prm_core.voting import weighted_vote


@dataclass(frozen=True)
class BeamSearchConfig:
    """How wide and how greedy the search is."""

    beam_width: int = 4  # partial solutions kept after each operation
    expansions: int = 4  # policy continuations (one operation each) sampled per kept solution
    rule: str = "min"  # aggregation of a partial solution's step scores ("min", "last", ...)
    seed: int = 0  # problem i searches with random.Random(seed * 1_000_003 + i)

    def __post_init__(self) -> None:
        for name in ("beam_width", "expansions"):
            check_int(getattr(self, name), name, "[1, inf)")
        check_choice(self.rule, "rule", list(AGGREGATIONS))
        check_seed(self.seed)
        check_fields(self)

    @property
    def samples_per_operation(self) -> int:
        """Policy calls per operation; best-of-N with this N makes as many."""
        return self.beam_width * self.expansions


@dataclass(frozen=True)
class SearchResult:
    """The chosen solution of one problem and what finding it cost."""

    solution: StepSample  # labelled exactly; meta["is_correct_answer"] says whether its answer is right
    n_generated_steps: int  # steps the policy wrote, kept or not
    n_scored: int  # partial or finished solutions the PRM scored
    final: tuple[StepSample, ...] = ()  # finished candidates of the last operation, labelled, with their
    # meta["search_score"]; a candidate the policy wrote k times appears k times (votes count copies)

    def voted(self) -> StepSample:
        """The final candidate whose answer has the highest summed score (a PRM-weighted vote over
        the last operation's candidates instead of keeping the single best; ties: first seen).

        Only candidates that state an answer vote, as in ``Verifier.weighted_vote``: "no answer" never
        wins while any candidate states one (when none does, the first candidate is returned).
        """
        if not self.final:
            raise ValueError("final is empty; this result was not built by beam_search.")
        voters = [s for s in self.final if s.answer is not None] or list(self.final)
        answers = [s.answer for s in voters]
        winner = weighted_vote(answers, [s.meta["search_score"] for s in voters])
        return voters[answers.index(winner)]


def keep_top(candidates: Sequence[Any], scores: Sequence[float], beam_width: int) -> list[Any]:
    """The ``beam_width`` highest-scoring candidates, best first; equal scores keep their order.

    ``scores`` holds one finite real per candidate and ``beam_width`` is an int >= 1 (ValueError
    otherwise: a NaN score would sort anywhere, and True would keep one candidate).

    Examples
    --------
    >>> keep_top(["a", "b", "c", "d"], [0.2, 0.9, 0.5, 0.9], 2)
    ['b', 'd']
    """
    beam_width = check_int(beam_width, "beam_width", "[1, inf)", "pass e.g. beam_width=4")
    values = check_real_array(scores, "scores", fix="score every candidate with a finite number")
    if values.ndim != 1 or len(values) != len(candidates):
        raise ValueError(f"scores has shape {values.shape} for {len(candidates)} candidates; pass one score each.")
    values = values.tolist()
    order = sorted(range(len(candidates)), key=lambda i: -values[i])  # sorted is stable
    return [candidates[i] for i in order[:beam_width]]


def _finished(problem: ArithmeticProblem, steps: Sequence[str]) -> bool:
    return track_steps(problem, steps).next_op_index >= len(problem.operations)


def _labelled(problem: ArithmeticProblem, steps: Sequence[str], score: float, is_done: bool = True) -> StepSample:
    answer, is_correct_answer = graded_answer(problem, steps)
    # the LM policy's rule (lm_policy.labelled_sample): a cut-off or unparseable solution is wrong, states nothing
    if not (is_done and all(parse_step(step) is not None for step in steps)):
        answer, is_correct_answer = None, False
    return StepSample(problem.text, steps, labels=track_steps(problem, steps).labels, answer=answer,
                      meta={"problem_id": problem.problem_id, "is_correct_answer": is_correct_answer,
                            "search_score": score})


def _propose(policy: Any, problems: Sequence[ArithmeticProblem], requests: list[tuple[int, tuple[str, ...]]],
             rngs: list[random.Random], seed: int) -> list[tuple[tuple[str, ...], bool]]:
    """One more operation after each ``(problem index, prefix)`` request, and whether the result is a
    whole solution. An LM policy (``extend_many``) answers all requests in one batch and says itself
    when it stopped; the noisy policy writes one at a time from each problem's own rng."""
    if not requests:
        return []
    if hasattr(policy, "extend_many"):
        return policy.extend_many([problems[i] for i, _ in requests], [prefix for _, prefix in requests], seed)
    out = []
    for i, prefix in requests:
        steps = policy.sample(problems[i], rngs[i], prefix=prefix, max_ops=1).steps
        out.append((steps, _finished(problems[i], steps)))
    return out


def beam_search(problems: Sequence[ArithmeticProblem], policy: Any, verifier: Verifier,
                config: BeamSearchConfig = BeamSearchConfig(), show_progress: bool = True) -> list[SearchResult]:
    """Search every problem at once, one operation at a time, scoring all extensions in one batch.

    Parameters
    ----------
    problems : sequence of ArithmeticProblem
    policy : NoisyPolicy or LMPolicy
        Proposes each next operation: ``sample(..., max_ops=1)``, or ``extend_many`` (batched) when the
        policy has it. An LM policy's search ends where the LM ends its solution (at most twice the
        operations plus two steps; a solution still open then is kept as it is, and graded wrong).
    verifier : Verifier
        Scores partial solutions with the PRM; the same encoder as training.
    config : BeamSearchConfig

    Returns
    -------
    list of SearchResult, one per problem, in order

    Examples
    --------
    >>> results = beam_search(problems, NoisyPolicy(), Verifier(prm))  # doctest: +SKIP
    >>> sum(r.solution.meta["is_correct_answer"] for r in results) / len(results)  # doctest: +SKIP
    """
    from tqdm.std import tqdm

    if not problems:
        raise ValueError("problems is empty; pass at least one problem to search.")
    if not isinstance(config, BeamSearchConfig):
        raise ValueError(f"config is a {type(config).__name__}; pass a BeamSearchConfig.")
    check_bool(show_progress, "show_progress")
    rngs = [random.Random(config.seed * 1_000_003 + i) for i in range(len(problems))]
    beams: list[list[tuple[str, ...]]] = [[()] for _ in problems]
    best: list[tuple[tuple[str, ...], float] | None] = [None] * len(problems)
    generated, scored = [0] * len(problems), [0] * len(problems)
    copies: list[dict[tuple[str, ...], int]] = [{} for _ in problems]  # this operation's candidates, counted
    is_done: list[dict[tuple[str, ...], bool]] = [{} for _ in problems]  # whether a candidate is a whole solution
    final: list[list[StepSample]] = [[] for _ in problems]
    finished = [True] * len(problems)
    depth = max(len(p.operations) for p in problems)
    if hasattr(policy, "extend_many"):  # an LM may recheck or stall: allow it twice the operations
        depth = 2 * depth + 2
    for level in tqdm(range(depth), desc="beam search", disable=not show_progress):
        requests = [(i, prefix) for i, problem in enumerate(problems) if best[i] is None for prefix in beams[i]
                    for _ in range(config.samples_per_operation if beams[i] == [()] else config.expansions)]
        owners, candidates = [], []
        for (i, prefix), (steps, done) in zip(requests, _propose(policy, problems, requests, rngs,
                                                                 config.seed * 1_000_003 + level), strict=True):
            generated[i] += len(steps) - len(prefix)
            if steps not in copies[i]:  # identical text gets an identical score: score one copy
                owners.append(i)
                candidates.append(steps)
            copies[i][steps] = copies[i].get(steps, 0) + 1
            is_done[i][steps] = done
        if not candidates:
            break
        samples = [StepSample(problems[i].text, steps) for i, steps in zip(owners, candidates, strict=True)]
        solution_scores = verifier.score_steps(samples).solution_scores(config.rule).tolist()
        ranked: dict[int, list[tuple[tuple[str, ...], float]]] = {}
        for i, steps, score in zip(owners, candidates, solution_scores, strict=True):
            scored[i] += 1
            ranked.setdefault(i, []).append((steps, score))
        for i, options in ranked.items():
            kept = keep_top(options, [score for _, score in options], config.beam_width)  # ties: sampling order
            if all(is_done[i][steps] for steps, _ in kept) or level == depth - 1:
                best[i], finished[i] = kept[0], is_done[i][kept[0][0]]
                for steps, score in options:  # one labelled sample per text, repeated once per copy
                    if is_done[i][steps]:
                        final[i] += [_labelled(problems[i], steps, score)] * copies[i][steps]
            beams[i] = [steps for steps, _ in kept]
            copies[i], is_done[i] = {}, {}
    results = []
    for i, problem in enumerate(problems):
        if best[i] is None:  # only a policy that never finishes a step gets here
            raise RuntimeError(f"problem {i} did not finish in {depth} operations; this is a bug in the policy "
                               "or the step tracker, not in the input.")
        steps, score = best[i]
        results.append(SearchResult(_labelled(problem, steps, score, finished[i]), generated[i], scored[i],
                                    tuple(final[i])))
    return results
