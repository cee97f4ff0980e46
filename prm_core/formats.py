"""Read and write the public PRM datasets' files as lists of ``StepSample``: one import for all.

Four formats, one reader and one writer each:

* **PRM800K** (openai/prm800k): human ratings -1/0/+1 per step, with the alternatives a labeler
  rated; ``read_prm800k`` / ``write_prm800k`` (in ``formats_prm800k``).
* **Math-Shepherd**: the solution in one string, every step ended by the tag ``ки``; a twin
  string has ``+``/``-`` where the tags were; ``read_math_shepherd`` / ``write_math_shepherd``.
* **TRL stepwise supervision**: ``prompt``, ``completions`` (the steps), ``labels`` (bools);
  ``read_trl_stepwise`` / ``write_trl_stepwise``.
* **ProcessBench**: the steps and the index of the first wrong step (-1: none);
  ``read_processbench`` / ``write_processbench``.

The last three live in ``formats_stepwise``, the shared plumbing in ``formats_io``.

Every reader takes a path (``.jsonl``, or ``.json`` holding a list of rows), an iterable of JSON
lines (an open file works; blank lines are passed over; a single str is always a path) or an
iterable of already-parsed dicts, and returns a ``ReadResult``: a plain list of samples that also
accounts for every row it did not turn into a sample, so nothing is dropped silently.
``excluded`` counts rows left out on purpose, by reason (e.g. PRM800K quality-control rows);
``skipped`` lists ``(row number, reason)`` for malformed rows, which only ``on_error="skip"``
tolerates, with one warning giving the count; ``cut`` lists rows kept only up to a step the
format leaves empty (a PRM800K step with no completion), with the steps cut. Otherwise a malformed row (bad JSON, a missing
field, a wrong type) raises ``ValueError`` naming its line (1-based), the field and the fix.

Every writer checks all samples before it opens the destination, raises ``ValueError`` naming
the sample when the format cannot hold it (a soft label in a correct/incorrect format, an
unlabelled step, Math-Shepherd's tag inside a step), writes JSONL (a JSON list for a ``.json``
path) and returns the number of rows written. For samples the format can hold, reading back what
a writer wrote gives the same problem, steps, labels and answer. The correct/incorrect formats
(Math-Shepherd, TRL) take ``unlabelled="prefix"`` to write each sample up to its first
unlabelled step, so whatever a reader returns can be written; the returned ``WriteResult`` (an
int) counts what was cut.

``fixture_path(name)`` gives a small hand-written file in each format, for offline notebooks.

Examples
--------
>>> from prm_core.formats import fixture_path, read_processbench
>>> [s.first_error_index() for s in read_processbench(fixture_path("processbench"))]
[-1, 2, 0, -1]
"""

from prm_core.formats_io import FIXTURE_NAMES, ReadResult, WriteResult, fixture_path
from prm_core.formats_prm800k import read_prm800k, write_prm800k
from prm_core.formats_stepwise import (
    TAG,
    read_math_shepherd,
    read_processbench,
    read_trl_stepwise,
    write_math_shepherd,
    write_processbench,
    write_trl_stepwise,
)

__all__ = [
    "FIXTURE_NAMES",
    "TAG",
    "ReadResult",
    "WriteResult",
    "fixture_path",
    "read_math_shepherd",
    "read_processbench",
    "read_prm800k",
    "read_trl_stepwise",
    "write_math_shepherd",
    "write_processbench",
    "write_prm800k",
    "write_trl_stepwise",
]
