"""The course's offline benchmark: chain arithmetic word problems whose steps are checked exactly.

A problem is a start value and 2-8 operations (+ - × ÷) told as a short story. Each step of a solution
holds one computation ``"A SYM B = C."`` (after a lead-in such as "Then ", or ``RECHECK_PREFIX``), so
``check_steps`` labels every step 1.0/0.0 exactly, from the text alone. One operation per problem may
have a *tricky phrasing* (``trap_index``) that solvers misread one consistent way (``MISREAD_OPS``).

The noisy policy that samples solutions lives in ``prm_core.tasks.arithmetic_policy``.
"""

from __future__ import annotations

import hashlib
import numbers
import operator
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from prm_core.checks import ArgumentTypeError, check_choice, check_int, check_seed
from prm_core.config_checks import check_fields

OPS = ("+", "-", "×", "÷")
RECHECK_PREFIX = "Wait, let me recheck: "
FRACTION_WORDS = {2: "half", 3: "third", 4: "quarter", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth",
                  9: "ninth"}
# The misconception each tricky phrasing invites: the operation a misreading solver applies instead.
MISREAD_OPS = {"+": "×", "-": "+", "×": "+", "÷": "-"}
TRICKY_PHRASES = {
    "+": "{name}'s pile grows by {b}.",
    "-": "{name} now has {b} less than before.",
    "×": "{name}'s {items} increase {b}-fold.",
    "÷": "{name} shares them equally among {b} friends, keeping one share.",
}
_PHRASES = {
    "+": ("{name} finds {b} more {items}.", "{name} buys {b} more {items}.", "{name} is given {b} more {items}.",
          "{name} wins another {b} {items}."),
    "-": ("{name} gives away {b} {items}.", "{name} loses {b} of them.", "{name} gives {b} {items} to a friend.",
          "{name} uses up {b} {items}."),
    "×": ("{name} ends up with {b} times as many {items} as before.", "{name} multiplies the pile by {b}.",
          "{name}'s pile becomes {b} times as big."),
    "÷": ("{name} splits them into {b} equal groups and keeps one group.", "{name} keeps one {frac} of them.",
          "{name} divides the {items} into {b} equal piles and keeps one pile."),
}
_OPENINGS = ("{name} has {n} {items}.", "{name} starts with {n} {items}.", "{name} collected {n} {items}.")
_CONNECTORS = ("", "Then ", "After that, ", "Next, ")
_NAMES = ("Aisha", "Mateo", "Yuki", "Priya", "Kwame", "Sofia", "Liam", "Mei", "Omar", "Ingrid", "Tomás",
          "Amara", "Ravi", "Hana", "Diego", "Zainab")
_ITEMS = ("marbles", "stickers", "coins", "shells", "cards", "beads", "stamps", "apples")
_REFERENCE_LEADS = ("Then ", "Next, ", "Now ")
# One computation: "A SYM B = C"; the look-behind keeps a number from being read out of a longer word.
_COMPUTATION = re.compile(r"(?<![\w-])(-?\d+)\s*([+\-×÷])\s*(-?\d+)\s*=\s*(-?\d+)(?!\d)")
# A number as an answer writes it: digits (in groups of three after commas: "3,000"), decimals ("14.0",
# also "1.2.3" to refuse it), an exponent ("1e3"). Never started inside another number (".5" is not 5).
_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:,\d+)*(?:\.\d+)*(?:[eE][+-]?\d+)?")
_INTEGER_TEXT = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?")  # an integer, maybe "3,000" or "14.00"
# Floor division keeps everything an integer; it only floors for a value the divisor does not divide.
_APPLY = {"+": operator.add, "-": operator.sub, "×": operator.mul, "÷": operator.floordiv}


@dataclass(frozen=True)
class Operation:
    """One step of a chain problem: apply ``symbol`` with ``operand`` to the running value.

    Examples
    --------
    >>> Operation("×", 3).apply(7), Operation("÷", 4).apply(10)
    (21, 2)
    """

    symbol: str  # one of OPS
    operand: int  # a positive integer

    def __post_init__(self) -> None:
        if self.symbol not in OPS:
            raise ValueError(f"symbol={self.symbol!r} is not an operation; use one of {OPS}.")
        if isinstance(self.operand, bool) or not isinstance(self.operand, int) or self.operand < 1:
            raise ValueError(f"operand={self.operand!r} must be a positive int; e.g. Operation('+', 5).")

    def apply(self, value: int) -> int:
        return apply_op(value, self.symbol, self.operand)


def apply_op(value: int, symbol: str, operand: int) -> int:
    """Integer result of ``value symbol operand``, one of ``OPS`` (÷ floors).

    Examples
    --------
    >>> apply_op(12, "-", 5), apply_op(12, "÷", 4), apply_op(13, "÷", 4)
    (7, 3, 3)
    """
    if symbol not in _APPLY:
        raise ValueError(f"symbol={symbol!r} is not an operation; use one of {OPS}.")
    value = check_int(value, "value")  # a float would give a float "integer" result, True would read as 1
    operand = check_int(operand, "operand", "[1, inf)" if symbol == "÷" else "(-inf, inf)", "÷ needs a divisor >= 1")
    return _APPLY[symbol](value, operand)


@dataclass(frozen=True)
class ArithmeticProblem:
    """A chain word problem: ``start`` then each of ``operations`` in order.

    Examples
    --------
    >>> p = ArithmeticProblem(0, 12, (Operation("+", 5), Operation("×", 2)), "Mei has 12 coins. ...")
    >>> p.values, p.answer
    ((12, 17, 34), 34)
    """

    problem_id: int
    start: int
    operations: tuple[Operation, ...]
    text: str
    trap_index: int | None = None  # index into operations of the tricky phrasing, None if none
    trap_strength: float = 0.0  # in [0, 1]: how readily solvers misread the trap (scaled by the policy)
    _values: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        operations = tuple(self.operations)
        if not operations or not all(isinstance(op, Operation) for op in operations):
            raise ValueError(f"operations={self.operations!r} must be a non-empty sequence of Operation.")
        object.__setattr__(self, "operations", operations)
        values = [self.start]
        for k, op in enumerate(operations):
            if op.symbol == "÷" and values[-1] % op.operand:
                raise ValueError(f"operations[{k}]=÷ {op.operand} does not divide {values[-1]} exactly; "
                                 "problems keep every true value an integer, so pick a divisor of it.")
            values.append(op.apply(values[-1]))
        object.__setattr__(self, "_values", tuple(values))
        if self.trap_index is not None and not 0 <= self.trap_index < len(operations):
            raise ValueError(f"trap_index={self.trap_index!r} must be None or in [0, {len(operations) - 1}].")
        if not 0.0 <= self.trap_strength <= 1.0:
            raise ValueError(f"trap_strength={self.trap_strength!r} must be in [0, 1]; use 0.0 for no trap.")

    @property
    def values(self) -> tuple[int, ...]:
        """True value before and after each operation: ``values[k + 1]`` follows ``operations[k]``."""
        return self._values

    @property
    def answer(self) -> int:
        return self._values[-1]

    @property
    def key(self) -> tuple:
        """Identity of the arithmetic, ignoring wording: problems with equal keys are the same problem."""
        return (self.start, tuple((op.symbol, op.operand) for op in self.operations))


@dataclass(frozen=True)
class ProblemConfig:
    """How ``make_problems`` draws problems. Every true intermediate stays in [1, max_value]."""

    min_ops: int = 2  # fewest operations per problem
    max_ops: int = 8  # most operations per problem
    min_start: int = 2  # smallest start value
    max_start: int = 40  # largest start value
    min_addend: int = 2  # smallest operand of + and -
    max_addend: int = 30  # largest operand of + and - (- never takes the value below 1)
    min_factor: int = 2  # smallest × operand
    max_factor: int = 5  # largest × operand
    max_product_base: int = 200  # × is only drawn when the value is at most this
    min_divisor: int = 2  # smallest ÷ operand (only exact divisors of the value are drawn)
    max_divisor: int = 9  # largest ÷ operand
    max_value: int = 999  # cap on every true intermediate value
    trap_rate: float = 0.7  # share of problems given a tricky phrasing (when one of its operations allows it)
    min_trap_strength: float = 0.2  # trap_strength is drawn uniformly from [min, max]
    max_trap_strength: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self)  # types first: the comparisons below assume numbers
        for lo, hi in (("min_ops", "max_ops"), ("min_start", "max_start"), ("min_addend", "max_addend"),
                       ("min_factor", "max_factor"), ("min_divisor", "max_divisor"),
                       ("min_trap_strength", "max_trap_strength")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo}={getattr(self, lo)!r} > {hi}={getattr(self, hi)!r}; {lo} must be <= {hi}, "
                                 f"so raise {hi} or lower {lo}.")
        for name, lowest in (("min_ops", 1), ("min_start", 1), ("min_addend", 1), ("min_factor", 2),
                             ("min_divisor", 2), ("max_value", self.max_start)):
            if getattr(self, name) < lowest:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= {lowest}; set {name}={lowest} or more.")
        for name in ("trap_rate", "min_trap_strength", "max_trap_strength"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value!r} must be in [0, 1]; it is a probability or a share.")


def _operand_choices(value: int, config: ProblemConfig) -> dict[str, list[int]]:
    addends = range(config.min_addend, config.max_addend + 1)
    choices = {
        "+": [b for b in addends if value + b <= config.max_value],
        "-": [b for b in addends if value - b >= 1],  # >= 1 so a later ÷ or × stays meaningful
        "×": [b for b in range(config.min_factor, config.max_factor + 1) if value * b <= config.max_value]
        if value <= config.max_product_base else [],
        "÷": [b for b in range(config.min_divisor, config.max_divisor + 1) if value % b == 0],
    }
    return {sym: operands for sym, operands in choices.items() if operands}


def _misread_answer(start: int, operations: Sequence[Operation], k: int, max_value: int) -> int | None:
    """Final value when operation ``k`` is misread (``MISREAD_OPS``) and all else is right; None unless
    that path is a usable trap: integers in [0, max_value] throughout (every later ÷ exact), a wrong
    value right after the misread and a wrong final answer."""
    value, true_value = start, start
    for j, op in enumerate(operations):
        if j == k:
            value = apply_op(value, MISREAD_OPS[op.symbol], op.operand)
            if value == op.apply(true_value):
                return None
        elif op.symbol == "÷" and value % op.operand:
            return None
        else:
            value = op.apply(value)
        true_value = op.apply(true_value)
        if not 0 <= value <= max_value:
            return None
    return None if value == true_value else value


def _render(rng: random.Random, start: int, operations: Sequence[Operation], trap_index: int | None) -> str:
    name, items = rng.choice(_NAMES), rng.choice(_ITEMS)
    sentences = [rng.choice(_OPENINGS).format(name=name, n=start, items=items)]
    for k, op in enumerate(operations):
        template = TRICKY_PHRASES[op.symbol] if k == trap_index else rng.choice(_PHRASES[op.symbol])
        body = template.format(name=name, items=items, b=op.operand, frac=FRACTION_WORDS.get(op.operand, ""))
        sentences.append(rng.choice(_CONNECTORS) + body)
    sentences.append(f"How many {items} does {name} have now?")
    return " ".join(sentences)


def _draw_problem(rng: random.Random, problem_id: int, config: ProblemConfig) -> ArithmeticProblem | None:
    start = rng.randint(config.min_start, config.max_start)
    value, operations = start, []
    for _ in range(rng.randint(config.min_ops, config.max_ops)):
        choices = _operand_choices(value, config)
        if not choices:
            return None  # a dead end only a very narrow config reaches; the caller redraws
        symbol = rng.choice(sorted(choices))
        operations.append(Operation(symbol, rng.choice(choices[symbol])))
        value = operations[-1].apply(value)
    trappable = [k for k in range(len(operations))
                 if _misread_answer(start, operations, k, config.max_value) is not None]
    trap_index, trap_strength = None, 0.0
    if trappable and rng.random() < config.trap_rate:
        trap_index = rng.choice(trappable)
        trap_strength = rng.uniform(config.min_trap_strength, config.max_trap_strength)
    text = _render(rng, start, operations, trap_index)
    return ArithmeticProblem(problem_id, start, tuple(operations), text, trap_index, trap_strength)


TEST_SHARE_PERCENT = 20  # share of all possible problems that belong to the test side of every split
SPLITS = ("train", "test")


def split_of(problem: ArithmeticProblem) -> str:
    """Which side of the benchmark a problem belongs to, from a stable hash of its ``key``.

    Every draw, whatever its seed, puts a given problem on the same side, so a backbone pretrained
    on train-side problems never saw a test problem.

    Examples
    --------
    >>> {split_of(p) for p in make_problems(50, seed=0)} == {"train", "test"}
    True
    """
    digest = hashlib.sha256(repr(problem.key).encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") % 100 < TEST_SHARE_PERCENT else "train"


def _draw(counts: dict[str | None, int], seed: int, config: ProblemConfig) -> dict[str | None, list[ArithmeticProblem]]:
    """Distinct problems from one seeded stream, ``counts[side]`` for each side (None: either side)."""
    rng = random.Random(seed)
    out: dict[str | None, list[ArithmeticProblem]] = {side: [] for side in counts}
    seen: set[tuple] = set()
    n, attempts, next_id = sum(counts.values()), 0, 0
    # one side alone (a fifth of problems are test-side) needs more draws than both together
    budget = 50 * n * (5 if None not in counts and len(counts) == 1 else 1) + 1000
    while any(len(out[side]) < counts[side] for side in counts):
        attempts += 1
        if attempts > budget:
            found = sum(len(v) for v in out.values())
            raise ValueError(f"{n} problems requested but only {found} distinct ones were found; "
                             "ask for fewer or widen the ranges in ProblemConfig.")
        problem = _draw_problem(rng, next_id, config)
        if problem is None or problem.key in seen:
            continue
        side = None if None in counts else split_of(problem)
        if side in counts and len(out[side]) < counts[side]:
            seen.add(problem.key)
            out[side].append(problem)
            next_id += 1
    return out


def make_problems(n: int, seed: int, config: ProblemConfig = ProblemConfig(),
                  split: str | None = None) -> list[ArithmeticProblem]:
    """Draw ``n`` distinct problems (no two share a ``key``), deterministically from ``seed``.

    Parameters
    ----------
    n : int
        How many problems; >= 1.
    seed : int
        Seed of the ``random.Random`` that draws everything, wording included; in [0, 2**63)
        (``random.Random`` would hash a float or a str, and read -1 as 1, without a word).
    config : ProblemConfig, default ProblemConfig()
        Ranges of start values and operands.
    split : {"train", "test"}, optional
        Keep only problems of that side (``split_of``); None keeps both.

    Returns
    -------
    list of ArithmeticProblem
        ``problem_id`` runs 0 .. n-1.

    Raises
    ------
    ValueError
        For ``n`` that is not an int >= 1, a bad ``seed`` or ``split``, or too few distinct problems.

    Examples
    --------
    >>> problems = make_problems(3, seed=0)
    >>> len(problems), len({p.key for p in problems}), [p.problem_id for p in problems]
    (3, 3, [0, 1, 2])
    """
    n = check_int(n, "n", "[1, inf)", "pass n=1 for a single problem")
    seed = check_seed(seed)
    if split is not None:
        check_choice(split, "split", SPLITS)
    return _draw({split: n}, seed, config)[split]


def make_splits(n_train: int, n_test: int, seed: int,
                config: ProblemConfig = ProblemConfig()) -> tuple[list[ArithmeticProblem], list[ArithmeticProblem]]:
    """Train and test problems, each on its side of ``split_of``: no test problem ever trains.

    Parameters
    ----------
    n_train, n_test : int
        Split sizes; each >= 1.
    seed : int
        Seed of the one draw both splits come from, in [0, 2**63).
    config : ProblemConfig, default ProblemConfig()

    Returns
    -------
    (list of ArithmeticProblem, list of ArithmeticProblem)
        ``(train, test)``; ids are unique across both.

    Examples
    --------
    >>> train, test = make_splits(4, 2, seed=0)
    >>> len(train), len(test), {p.key for p in train} & {p.key for p in test}
    (4, 2, set())
    """
    n_train, n_test = (check_int(value, name, "[1, inf)") for name, value in (("n_train", n_train), ("n_test", n_test)))
    seed = check_seed(seed)
    drawn = _draw({"train": n_train, "test": n_test}, seed, config)
    return drawn["train"], drawn["test"]


def format_step(a: int, symbol: str, b: int, c: int, lead: str = "", is_recheck: bool = False) -> str:
    """Write one step in the format ``check_steps`` parses (``a``, ``b`` and ``c`` ints, never bools).

    Examples
    --------
    >>> format_step(17, "×", 2, 34, lead="Then "), format_step(5, "+", 3, 8, is_recheck=True)
    ('Then 17 × 2 = 34.', 'Wait, let me recheck: 5 + 3 = 8.')
    """
    a, b, c = (check_int(value, name, fix="a step writes integers") for name, value in (("a", a), ("b", b), ("c", c)))
    return f"{RECHECK_PREFIX if is_recheck else lead}{a} {symbol} {b} = {c}."


def reference_solution(problem: ArithmeticProblem) -> list[str]:
    """The correct steps, one per operation.

    Examples
    --------
    >>> p = ArithmeticProblem(0, 12, (Operation("+", 5), Operation("×", 2)), "Mei has 12 coins. ...")
    >>> reference_solution(p)
    ['12 + 5 = 17.', 'Then 17 × 2 = 34.']
    """
    values = problem.values
    return [format_step(values[k], op.symbol, op.operand, values[k + 1],
                        lead="" if k == 0 else _REFERENCE_LEADS[(k - 1) % len(_REFERENCE_LEADS)])
            for k, op in enumerate(problem.operations)]


@dataclass(frozen=True)
class ParsedStep:
    """The computation ``a symbol b = c`` found in a step, and whether the step is a recheck."""

    a: int
    symbol: str
    b: int
    c: int
    is_recheck: bool


def parse_step(step: str) -> ParsedStep | None:
    """Read the one computation of a step; None unless the step ends with "." and holds exactly one.

    Examples
    --------
    >>> parse_step("Next, 34 - 4 = 30.")
    ParsedStep(a=34, symbol='-', b=4, c=30, is_recheck=False)
    >>> parse_step("34 - 4 = 30 and 2 + 2 = 4.") is None
    True
    """
    if not isinstance(step, str) or not step.rstrip().endswith("."):
        return None
    found = _COMPUTATION.findall(step)
    if len(found) != 1:
        return None
    a, symbol, b, c = found[0]
    return ParsedStep(int(a), symbol, int(b), int(c), step.lstrip().startswith(RECHECK_PREFIX.rstrip()))


@dataclass(frozen=True)
class StepTrack:
    """The checker's state after a solution: per-step labels and where the solution stands."""

    labels: list[float]
    next_op_index: int  # the operation the next normal step should compute
    is_on_track: bool  # True iff every step so far is right, or a correct recheck restored the track
    last_value: int  # c of the last parsed step (the value the solver believes it has); start if none


def _is_right(problem: ArithmeticProblem, k: int, parsed: ParsedStep) -> bool:
    if not 0 <= k < len(problem.operations):
        return False
    op = problem.operations[k]
    return (parsed.a == problem.values[k] and parsed.symbol == op.symbol and parsed.b == op.operand
            and parsed.c == problem.values[k + 1])


def track_steps(problem: ArithmeticProblem, steps: Sequence[str]) -> StepTrack:
    """Label ``steps`` exactly and report the state a solver continuing them would be in.

    A normal step computes the next operation; it is right iff its a, symbol, b and c all match that
    operation's true values, and it is labelled 1.0 iff it is right and every step before it was
    (the solution is on track). A recheck step redoes the previous operation: right puts the solution
    back on track (1.0), wrong takes it off (0.0). An unparseable step gets 0.0, takes the solution
    off track and consumes no operation; a step past the last operation gets 0.0.

    Examples
    --------
    >>> p = ArithmeticProblem(0, 12, (Operation("+", 5), Operation("×", 2)), "Mei has 12 coins. ...")
    >>> t = track_steps(p, ["12 + 5 = 18.", "Wait, let me recheck: 12 + 5 = 17."])
    >>> t.labels, t.next_op_index, t.is_on_track, t.last_value
    ([0.0, 1.0], 1, True, 17)
    """
    op_index, is_on_track, last_value = 0, True, problem.start
    labels: list[float] = []
    for step in steps:
        parsed = parse_step(step)
        if parsed is None:
            labels.append(0.0)
            is_on_track = False
            continue
        last_value = parsed.c
        if parsed.is_recheck:
            is_on_track = _is_right(problem, op_index - 1, parsed)
            labels.append(1.0 if is_on_track else 0.0)
        else:
            is_on_track = is_on_track and _is_right(problem, op_index, parsed)
            labels.append(1.0 if is_on_track else 0.0)
            op_index += 1
    return StepTrack(labels, op_index, is_on_track, last_value)


def check_steps(problem: ArithmeticProblem, steps: Sequence[str]) -> list[float]:
    """Exact labels (1.0 correct, 0.0 incorrect), one per step; see ``track_steps`` for the rule.

    Parameters
    ----------
    problem : ArithmeticProblem
    steps : sequence of str
        A solution's steps, e.g. ``NoisyPolicy.sample(...).steps``; any text is accepted.

    Returns
    -------
    list of float
        One label per step; never raises on malformed steps (they get 0.0).

    Examples
    --------
    >>> p = ArithmeticProblem(0, 12, (Operation("+", 5), Operation("×", 2)), "Mei has 12 coins. ...")
    >>> check_steps(p, ["12 + 5 = 18.", "Then 18 × 2 = 36."])
    [0.0, 0.0]
    """
    return track_steps(problem, steps).labels


@dataclass(frozen=True)
class WeakestStepOracle:
    """A perfect step scorer for one problem: each candidate solution's score is its weakest exact
    step label (1.0 when every step is right). Search exercises use it so that any difference from
    the reference is the search's; it pickles, unlike a closure.

    Examples
    --------
    >>> p = ArithmeticProblem(0, 12, (Operation("+", 5),), "Mei has 12 coins. ...")
    >>> WeakestStepOracle(p)([["12 + 5 = 17."], ["12 + 5 = 18."]])
    [1.0, 0.0]
    """

    problem: ArithmeticProblem

    def __call__(self, candidates: Sequence[Sequence[str]]) -> list[float]:
        return [min(check_steps(self.problem, steps)) for steps in candidates]


def final_value(steps: Sequence[str]) -> int | None:
    """The value a solution ends with: ``c`` of its last step; None if that step has no computation.

    Examples
    --------
    >>> final_value(["12 + 5 = 17.", "Then 17 × 2 = 34."]), final_value(["I give up."])
    (34, None)
    """
    if not steps:
        return None
    parsed = parse_step(steps[-1])
    return None if parsed is None else parsed.c


def graded_answer(problem: ArithmeticProblem, steps: Sequence[str]) -> tuple[str | None, bool]:
    """The answer a solution states (str of its final value, None without one) and whether it is right;
    the policy and the search grade their solutions with this one rule.

    Examples
    --------
    >>> p = ArithmeticProblem(0, 12, (Operation("+", 2),), "Mei has 12 coins. ...")
    >>> graded_answer(p, ["12 + 2 = 14."]), graded_answer(p, ["I give up."])
    (('14', True), (None, False))
    """
    value = final_value(steps)
    answer = None if value is None else str(value)
    return answer, grade_answer(answer, problem)


def answer_value(answer: str | int | None) -> int | None:
    """The integer an answer states on this benchmark: its last number, when that is an integer.

    The benchmark's exact grader, and the ``answer_key`` its votes group by (``Verifier(...,
    answer_key=answer_value)``): answers are integers, so no equivalence checking is needed. The
    last number may be written with thousands separators (``"3,000"``) or zero decimals
    (``"14.0"``); any other last number (``"14.5"``, ``"1e3"``, ``"1.2.3"``) states no integer
    and reads as None, never as another number. An int (numpy's too) is its own value.

    Examples
    --------
    >>> answer_value("The answer is 14."), answer_value("14.0"), answer_value("3,000"), answer_value(None)
    (14, 14, 3000, None)
    >>> answer_value("fourteen"), answer_value("14.5"), answer_value("1e3")
    (None, None, None)
    """
    if answer is None:
        return None
    if isinstance(answer, numbers.Integral) and not isinstance(answer, bool):
        return int(answer)
    if not isinstance(answer, str):
        raise ArgumentTypeError(f"answer={answer!r} has type {type(answer).__name__}; pass a str, an int or None.")
    found = _NUMBER.findall(answer)
    if not found or not _INTEGER_TEXT.fullmatch(found[-1]):
        return None
    return int(found[-1].split(".")[0].replace(",", ""))


def grade_answer(answer: str | int | None, problem: ArithmeticProblem) -> bool:
    """True iff ``answer`` is the problem's answer; a string is read by ``answer_value``.

    Parameters
    ----------
    answer : str, int or None
        ``14`` (a numpy integer too), ``"14"``, ``"14.0"`` or ``"The answer is 14."``; None, a bool,
        or a string whose last number is not an integer (``"14.5"``, ``"1e3"``) grades False.
    problem : ArithmeticProblem

    Returns
    -------
    bool

    Examples
    --------
    >>> p = ArithmeticProblem(0, 12, (Operation("+", 2),), "Mei has 12 coins. ...")
    >>> grade_answer("The answer is 14.", p), grade_answer(14, p), grade_answer("fourteen", p)
    (True, True, False)
    """
    if answer is None or isinstance(answer, bool):
        return False
    if isinstance(answer, numbers.Integral):
        return int(answer) == problem.answer
    if not isinstance(answer, str):
        raise ArgumentTypeError(f"answer={answer!r} has type {type(answer).__name__}; pass a str, an int or None.")
    return answer_value(answer) == problem.answer

