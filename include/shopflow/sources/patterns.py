"""Regular expressions declared in a sources file, compiled by RE2 (`google-re2`), whose matching time is linear in
the text's length whatever the pattern.

Python's `re` backtracks: `(?=a)(a+)+b` took 47 s on two 30-character values, doubling with each character. RE2 has
no backreferences and no lookarounds, so a pattern that needs them is refused when the sources file is loaded, with
the pattern named. A `regex` rule keeps the meaning it had under pandas' `str.fullmatch`: the whole value must
match. RE2's `\\d`, `\\w`, `\\s` and `\\b` are ASCII (Python's are Unicode), and `(?i)`, classes, repetition,
alternation and anchors mean what they mean in Python.
"""

from __future__ import annotations

from functools import lru_cache
import re
from typing import Iterable

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would also print each refused pattern on stderr


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message names the pattern."""


@lru_cache(maxsize=256)
def compile_pattern(pattern: str):
    """The pattern compiled by RE2; PatternError naming the pattern when RE2 cannot compile it."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"pattern {pattern!r} is not a regular expression the linear-time engine (RE2) accepts "
                           f"({reason}; backreferences and lookarounds such as (?=...) are not available)") from None


def fully_matching(pattern: str, values: Iterable[str]) -> list[str]:
    """The values the pattern matches whole (as `re.fullmatch`). A value that is not valid Unicode text (a lone
    surrogate) matches nothing."""
    compiled = compile_pattern(pattern)
    matching = []
    for value in values:
        try:
            if compiled.fullmatch(value) is not None:
                matching.append(value)
        except UnicodeEncodeError:
            continue
    return matching


def check_backtracking_safe(pattern: str) -> None:
    """PatternError naming the pattern when it nests repetitions (`(a+)+`, `(a|aa)*`, `(\\w{1,9})*`): Great
    Expectations matches its regex expectations with Python's backtracking `re`, where such a pattern can take
    exponential time on one value. The pattern must also be one RE2 accepts (compile_pattern)."""
    import re._parser as sre_parser  # the standard library's own pattern parser

    compile_pattern(pattern)
    repeats = (sre_parser.MAX_REPEAT, sre_parser.MIN_REPEAT, sre_parser.POSSESSIVE_REPEAT) \
        if hasattr(sre_parser, "POSSESSIVE_REPEAT") else (sre_parser.MAX_REPEAT, sre_parser.MIN_REPEAT)

    def walk(items, inside_repeat: bool) -> None:
        for op, argument in items:
            if op in repeats:
                _low, high, body = argument
                repeated = high > 1
                if repeated and inside_repeat:
                    raise PatternError(f"pattern {pattern!r} repeats a repetition (as in (a+)+): Python's "
                                       f"backtracking engine, which matches expectation regexes, could take "
                                       f"exponential time on one value; write it without the nesting")
                walk(body, inside_repeat or repeated)
            elif op is sre_parser.BRANCH:
                if inside_repeat and len(argument[1]) > 1:
                    raise PatternError(f"pattern {pattern!r} repeats an alternation (as in (a|aa)*): Python's "
                                       f"backtracking engine, which matches expectation regexes, could take "
                                       f"exponential time on one value; use a character class or no repetition")
                for branch in argument[1]:
                    walk(branch, inside_repeat)
            elif op is sre_parser.SUBPATTERN:
                walk(argument[-1], inside_repeat)
            elif op in (sre_parser.ASSERT, sre_parser.ASSERT_NOT):
                walk(argument[1], inside_repeat)

    try:
        walk(sre_parser.parse(pattern), False)
    except re.error as exc:
        raise PatternError(f"pattern {pattern!r} is not a Python regular expression ({exc})") from None
