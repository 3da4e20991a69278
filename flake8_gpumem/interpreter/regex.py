"""Regular expressions of the code gpumem reads, run only where their work is bounded first.

Model code parses its config strings with `re` ("ir_r1_k3_s1_e1_c16" split by `(\\d.*)`), so the
interpreter runs `re.split/match/...` on the strings it knows. Python's `re` backtracks and has
no timeout: `re.match(r"(a+)+$", "a" * 34 + "b")` tries about 2**34 ways and holds flake8 for
minutes. So before a call runs, the ways a backtracking matcher can try are bounded from the
pattern's parse tree and the subject's length n: a quantifier over a body that matches one way
offers one way per count it can take (at most n + 1); over a body of p ways, up to p**k for k
repetitions, which is what makes a nested quantifier (`(a+)+`, `(a*)*`, `(\\w+\\s?)*`, `(a|aa)+`)
exponential in n; an alternation offers the sum of its branches' ways, a sequence the product of
its parts'. Each way walks at most n + 1 characters, from each start a search tries (one for a
match). A call whose bound exceeds MAX_MATCHER_STEPS is refused, naming the pattern, instead of
run; the patterns model code runs on its short config strings stay far below it. The bound of a
call that runs counts against the model's evaluation budget, so that many calls in a loop are
bounded too.
"""
from __future__ import annotations

import re

try:
    from re import _parser as sre_parse  # Python 3.11+
except ImportError:  # pragma: no cover
    import sre_parse

from ..values import Unresolved

MAX_MATCHER_STEPS = 10_000_000  # matcher steps one call may take: a tenth of a second to a second
STEPS_PER_EVALUATION = 100  # matcher steps about as long as one evaluated node (what a call costs)
ANCHORED = ("match", "fullmatch")  # tried from the subject's start only; the others from every position
# re's functions of strings (model code parses its config strings: "ir_r1_k3_s1_e1_c16"), run where
# their work is bounded; a compiled pattern's methods of the same names are these
FUNCTIONS = ("split", "match", "fullmatch", "search", "sub", "findall")
SUBJECT = {"sub": 2}  # the subject's position among the arguments, where it is not the second


def bound(name: str, args: list, kwargs: dict, node=None) -> int:
    """The bound on the steps `re.<name>(*args, **kwargs)` can take; Unresolved where it exceeds
    MAX_MATCHER_STEPS."""
    pattern = args[0] if args else kwargs.get("pattern")
    position = SUBJECT.get(name, 1)
    subject = args[position] if len(args) > position else kwargs.get("string")
    if not isinstance(pattern, str) or not isinstance(subject, str):
        raise Unresolved(f"re.{name}() of something that is not a string", node)
    work = steps(pattern, len(subject), name in ANCHORED, node)
    if work > MAX_MATCHER_STEPS:
        raise Unresolved(f"re.{name}({pattern[:40]!r}, ...) on a string of {len(subject)} characters could take "
                         f"more than {MAX_MATCHER_STEPS:,} backtracking steps: not run (Python's re has no timeout)",
                         node)
    return work


def steps(pattern: str, n: int, anchored: bool, node=None) -> int:
    """An upper bound on a backtracking matcher's steps for `pattern` on a subject of n
    characters, capped just above MAX_MATCHER_STEPS."""
    try:
        tree = sre_parse.parse(pattern)
    except re.error as exc:
        raise Unresolved(f"bad regular expression {pattern[:40]!r}: {exc}", node) from None
    starts = 1 if anchored else n + 1
    return _cap(starts * _cap(_ways(tree, n) * (n + 1)))


def _ways(items, n: int) -> int:
    """The ways a sequence of pattern items can match: the product of its items' ways."""
    total = 1
    for op, arg in items:
        total = _cap(total * _item_ways(op.name, arg, n))
    return total


def _item_ways(name: str, arg, n: int) -> int:
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, body = arg
        high = min(high, n + 1)  # each repetition but an empty last one consumes a character
        counts = max(high - low + 1, 1)
        ways = _ways(body, n)
        return counts if ways == 1 else _cap(counts * _power(ways, high))
    if name == "BRANCH":
        return _cap(sum(_ways(branch, n) for branch in arg[1]))
    if name == "SUBPATTERN":
        return _ways(arg[-1], n)
    if name in ("ASSERT", "ASSERT_NOT"):
        return _ways(arg[1], n)
    if name == "ATOMIC_GROUP":
        return _ways(arg, n)
    if name == "GROUPREF_EXISTS":
        _, yes, no = arg
        return _cap(_ways(yes, n) + (_ways(no, n) if no else 1))
    return 1  # a character, a class, an anchor, a backreference: one way


def _power(base: int, exponent: int) -> int:
    out = 1
    for _ in range(exponent):
        out *= base
        if out > MAX_MATCHER_STEPS:
            return MAX_MATCHER_STEPS + 1
    return out


def _cap(value: int) -> int:
    return min(value, MAX_MATCHER_STEPS + 1)
