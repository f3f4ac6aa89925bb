"""The language of a derived column's `expression`: a small declarative language over the clean columns, never code.

An expression is parsed with Python's `ast` (mode "eval") and accepted only when every node is on a whitelist; it is
then compiled into a tree of closures over pandas Series, so that nothing but the whitelisted operations can run.
`pandas.eval` is not used: it resolves `@` names and attribute chains (`@pd.io.common.os.system(...)` ran a shell
command). `asteval` was not used either: it is a general Python interpreter (loops, assignments, any method of any
value), far more than a derived column needs, and its safety rests on a blacklist.

What an expression may hold (docs/sources-file.md, "Derived columns"):
- names of clean columns declared before the derived column;
- literals: text, integers (|n| < 2**53), finite decimals, True, False, None;
- arithmetic `+ - * / // %` and unary `-`/`+` on numbers, `+` also joins texts;
- comparisons `== != < <= > >=` (chained too) between values of one kind;
- boolean logic `and or not` and `& | ~` on booleans, and `a if condition else b`;
- the functions of FUNCTIONS, as `f(x, ...)` or as a method `x.f(...)`; the pandas spellings `x.str.lower()` (and
  the other STR_ACCESSOR functions), `x.str[a:b]` and `x.dt.year` (DT_ACCESSOR) mean the same.

Every value has a kind (text, number, bool, date, timestamp, or null for the `None` literal), known from the column
types before anything is evaluated, so that `"a" * 10**9`, `lower(price)` or `~quantity` are refused at load. Length
and nesting are bounded (MAX_LENGTH, MAX_DEPTH). Every refusal is an ExpressionError that quotes the forbidden part.
"""

from __future__ import annotations

import ast
import io
import math
import operator
import tokenize
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
else:
    class _Pandas:
        """pandas, imported on first use: this module is loaded with the sources file, also where a DAG file is
        parsed, which must not import pandas (tests/dags/test_dagbag.py); only evaluating an expression needs it."""

        def __getattr__(self, name: str):
            import pandas

            return getattr(pandas, name)

    pd = _Pandas()

MAX_LENGTH = 1000  # characters
MAX_DEPTH = 50  # levels of nesting of the parsed expression
MAX_EXACT_INTEGER = 2**53

TEXT, NUMBER, BOOL, DATE, TIMESTAMP, NULL = "text", "number", "bool", "date", "timestamp", "null"
ANY = "any"  # a column whose type is not known yet (the check of an expression on its own, before its source's)
KIND_OF_TYPE = {"string": TEXT, "category": TEXT, "int": NUMBER, "float": NUMBER, "bool": BOOL, "date": DATE,
                "timestamp": TIMESTAMP}
# The dtype a literal takes when it stands for a whole column (a branch of if-else, a function's first argument).
_DTYPE_OF_KIND = {TEXT: "string", NUMBER: "Float64", BOOL: "boolean", DATE: "datetime64[s]",
                  TIMESTAMP: "datetime64[us, UTC]"}

Value = Any  # a pandas Series over the frame's index, or a Python scalar (a literal, or literals combined)
Evaluator = Callable[["_Frame"], Value]


class ExpressionError(ValueError):
    """An expression is not in the language, or cannot be evaluated; the message quotes the expression's part."""


def kind_of_type(column_type: str) -> str:
    """The kind of a clean column's values: text, number, bool, date or timestamp (decimal(p,s) is a number)."""
    return KIND_OF_TYPE.get(column_type, NUMBER if column_type.startswith("decimal") else TEXT)


# ---- the functions -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Function:
    """One function of the language. `parameters` are the kinds of its positional arguments: a kind, `same` (the
    first argument's kind), `int literal`, `text literal`, or `text|number`; `required` of them must be given, and a
    `variadic` function repeats its last one. `result` is a kind, or None for the first argument's kind."""

    name: str
    parameters: tuple[str, ...]
    result: str | None
    apply: Callable[..., Value]
    summary: str
    required: int = 1
    variadic: bool = False
    keywords: tuple[str, ...] = ()  # keyword arguments it takes: text literals


def _fill(values: pd.Series, filler: Value) -> pd.Series:
    if filler is None:
        return values
    as_float = isinstance(filler, float) or (isinstance(filler, pd.Series) and pd.api.types.is_float_dtype(filler))
    if as_float and pd.api.types.is_integer_dtype(values.dtype):
        values = values.astype("Float64")  # an integer column filled with 0.5 holds decimals
    return values.fillna(filler)


def _coalesce(values: pd.Series, *others: Value) -> pd.Series:
    for other in others:
        values = _fill(values, other)
    return values


def _cat(values: pd.Series, *others: Value, sep: str = "") -> pd.Series:
    # As pandas str.cat with na_rep=None: a row with a null in any part is null.
    for other in others:
        values = values + sep + other if sep else values + other
    return values


def _to_number(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values
    return pd.to_numeric(values, errors="coerce")


def _date_part(part: str) -> Callable[[pd.Series], pd.Series]:
    return lambda values: getattr(values.dt, part).astype("Int64")


FUNCTIONS: dict[str, Function] = {f.name: f for f in [
    Function("isna", (ANY,), BOOL, lambda v: v.isna(), "true where the value is null"),
    Function("notna", (ANY,), BOOL, lambda v: v.notna(), "true where the value is not null"),
    Function("fillna", (ANY, "same"), None, _fill, "the value, or the second argument where it is null", required=2),
    Function("coalesce", (ANY, "same"), None, _coalesce, "the first argument that is not null", required=2,
             variadic=True),
    Function("lower", (TEXT,), TEXT, lambda v: v.str.lower(), "text in lower case"),
    Function("upper", (TEXT,), TEXT, lambda v: v.str.upper(), "text in upper case"),
    Function("strip", (TEXT,), TEXT, lambda v: v.str.strip(), "text without outer white space"),
    Function("len", (TEXT,), NUMBER, lambda v: v.str.len(), "the number of characters"),
    Function("slice", (TEXT, "int literal", "int literal"), TEXT, lambda v, start, stop=None: v.str.slice(start, stop),
             "characters start to stop (stop excluded; negative from the end), as Python slices", required=2),
    Function("startswith", (TEXT, "text literal"), BOOL, lambda v, prefix: v.str.startswith(prefix),
             "true where the text starts with the literal", required=2),
    Function("endswith", (TEXT, "text literal"), BOOL, lambda v, suffix: v.str.endswith(suffix),
             "true where the text ends with the literal", required=2),
    Function("contains", (TEXT, "text literal"), BOOL, lambda v, part: v.str.contains(part, regex=False),
             "true where the text contains the literal (plain text, not a pattern)", required=2),
    Function("cat", (TEXT, TEXT), TEXT, _cat, "the texts joined, with sep between them (null if any is null)",
             required=2, variadic=True, keywords=("sep",)),
    Function("abs", (NUMBER,), NUMBER, lambda v: v.abs(), "the absolute value"),
    Function("round", (NUMBER, "int literal"), NUMBER, lambda v, digits=0: v.round(digits),
             "rounded to that many decimal places (default 0; halves to even)"),
    Function("to_number", ("text|number",), NUMBER, _to_number, "text read as a number (null where it is not one)"),
    Function("year", ((DATE, TIMESTAMP),), NUMBER, _date_part("year"), "the year of a date or timestamp (UTC)"),
    Function("month", ((DATE, TIMESTAMP),), NUMBER, _date_part("month"), "the month, 1 to 12"),
    Function("day", ((DATE, TIMESTAMP),), NUMBER, _date_part("day"), "the day of the month"),
    Function("hour", ((TIMESTAMP,),), NUMBER, _date_part("hour"), "the hour of a timestamp (UTC), 0 to 23"),
]}
# pandas accessor spellings that mean exactly the function of the same name: `x.str.lower()`, `x.dt.year`.
STR_ACCESSOR = ("lower", "upper", "strip", "len", "slice", "startswith", "endswith", "cat")
DT_ACCESSOR = ("year", "month", "day", "hour")
OPERATORS = "+ - * / // % == != < <= > >= and or not & | ~, a if condition else b"
HINT = (f"use column names, literals, the operators {OPERATORS} and the functions "
        + ", ".join(sorted(FUNCTIONS)))

_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_LOGIC = {ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.And: operator.and_, ast.Or: operator.or_}
_COMPARISONS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
                ast.Gt: operator.gt, ast.GtE: operator.ge}
# What a node the language does not have is, in the words of the error.
_WHAT = {ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
         ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension", ast.NamedExpr: "an assignment",
         ast.JoinedStr: "an f-string", ast.FormattedValue: "an f-string", ast.Starred: "unpacking",
         ast.Subscript: "indexing (only x.str[start:stop] slices text)", ast.Dict: "a dict", ast.Set: "a set",
         ast.List: "a list", ast.Tuple: "a tuple", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
         ast.Slice: "a slice", ast.Pow: "the operator **", ast.MatMult: "the operator @",
         ast.LShift: "the operator <<", ast.RShift: "the operator >>", ast.BitXor: "the operator ^",
         ast.Is: "the operator is", ast.IsNot: "the operator is not", ast.In: "the operator in",
         ast.NotIn: "the operator not in"}


# ---- compiling -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompiledExpression:
    """An expression accepted by the language: its kind, the columns it reads, and how to evaluate it."""

    text: str
    kind: str
    columns: frozenset[str]
    evaluator: Evaluator

    def evaluate(self, columns: Mapping[str, pd.Series], index: pd.Index) -> pd.Series:
        """The expression's values over `index` (a literal result is repeated on every row)."""
        frame = _Frame(columns, index)
        try:
            values = self.evaluator(frame)
            return frame.series(values, self.kind)
        except Exception as exc:  # noqa: BLE001 - whatever pandas raises, the expression is named
            raise ExpressionError(f"expression {_quoted(self.text)}: cannot be evaluated on these rows "
                                  f"({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class _Frame:
    columns: Mapping[str, pd.Series]
    index: pd.Index

    def series(self, value: Value, kind: str) -> pd.Series:
        if isinstance(value, pd.Series):
            return value
        dtype = _DTYPE_OF_KIND.get(kind) if value is None else None
        if isinstance(value, str):
            dtype = "string"
        elif isinstance(value, bool):
            dtype = "boolean"
        elif isinstance(value, int):
            dtype = "Int64"
        elif isinstance(value, float):
            dtype = "Float64"
        return pd.Series([value] * len(self.index), index=self.index, dtype=dtype or object)


def check_expression(text: str) -> CompiledExpression:
    """The expression on its own (column names and kinds unknown): syntax, whitelist, length and depth."""
    return _compile(text, None)


def compile_expression(text: str, columns: Mapping[str, str]) -> CompiledExpression:
    """The expression over `columns` (name -> kind, the clean columns declared before it, in order)."""
    return _compile_cached(text, tuple(columns.items()))


@lru_cache(maxsize=256)
def _compile_cached(text: str, columns: tuple[tuple[str, str], ...]) -> CompiledExpression:
    return _compile(text, dict(columns))


def _compile(text: str, columns: Mapping[str, str] | None) -> CompiledExpression:
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an expression is a non-empty text")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression {_quoted(text)}: longer than {MAX_LENGTH} characters ({len(text)})")
    if "\x00" in text:
        raise ExpressionError(f"expression {_quoted(text)}: holds a NUL character")
    _refuse_at_names(text)
    try:
        with warnings.catch_warnings():  # e.g. an invalid escape in a literal: the text means what Python reads
            warnings.simplefilter("ignore")
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"expression {_quoted(text)}: not an expression ({exc.msg}); {HINT}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"expression {_quoted(text)}: cannot be parsed ({type(exc).__name__})") from None
    _check_depth(text, tree)
    compiler = _Compiler(text.strip(), columns)
    kind, evaluator = compiler.node(tree.body)
    return CompiledExpression(text, kind, frozenset(compiler.used), evaluator)


def _refuse_at_names(text: str) -> None:
    """`@name` is a pandas.eval local variable (the hole this language closes): named before parsing, which would
    only say 'invalid syntax'."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return  # the parser names the problem
    for token, following in zip(tokens, tokens[1:] + [None]):
        if token.type == tokenize.OP and token.string == "@":
            glued = following is not None and following.type == tokenize.NAME and following.start == token.end
            part = "@" + following.string if glued else "@"
            raise ExpressionError(f"expression {_quoted(text)}: {part!r} is not allowed ({HINT})")


def _check_depth(text: str, tree: ast.AST) -> None:
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression {_quoted(text)}: nested more than {MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _quoted(text: str, limit: int = 120) -> str:
    text = text if len(text) <= limit else text[:limit] + "…"
    return '"' + text.replace('"', '\\"') + '"'


class _Compiler:
    """Checks each node against the whitelist and the kinds, and returns (kind, evaluator) for it."""

    def __init__(self, text: str, columns: Mapping[str, str] | None):
        self.text, self.columns, self.used = text, columns, set()

    # -- errors
    def part(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.text, node) or type(node).__name__
        return repr(segment if len(segment) <= 60 else segment[:60] + "…")

    def refuse(self, node: ast.AST, what: str | None = None) -> ExpressionError:
        what = what or _WHAT.get(type(node), type(node).__name__)
        return ExpressionError(f"expression {_quoted(self.text)}: {self.part(node)} is not allowed ({what}; {HINT})")

    def wrong(self, node: ast.AST, problem: str) -> ExpressionError:
        return ExpressionError(f"expression {_quoted(self.text)}: {self.part(node)}: {problem}")

    def expect(self, node: ast.AST, kind: str, wanted: tuple[str, ...], role: str) -> None:
        if kind == NULL:
            raise self.wrong(node, f"None is not {role} (None is only a value: of if-else, fillna or coalesce; "
                                   "isna(x) tests for null)")
        if kind != ANY and kind not in wanted:
            raise self.wrong(node, f"{role} is {' or '.join(wanted)}, not {kind}")

    # -- nodes
    def node(self, node: ast.AST) -> tuple[str, Evaluator]:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise self.refuse(node)
        kind, evaluator = method(node)
        if kind == BOOL:  # one boolean dtype: pandas' comparisons of text give pyarrow booleans, which mix with no other
            return kind, lambda frame: _as_boolean(evaluator(frame))
        return kind, evaluator

    def _Constant(self, node: ast.Constant) -> tuple[str, Evaluator]:
        value = node.value
        if isinstance(value, bool):
            kind = BOOL
        elif value is None:
            kind = NULL
        elif isinstance(value, str):
            kind = TEXT
        elif isinstance(value, int):
            if abs(value) >= MAX_EXACT_INTEGER:
                raise self.wrong(node, "an integer literal is less than 2**53 in size")
            kind = NUMBER
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise self.wrong(node, "a decimal literal is finite")
            kind = NUMBER
        else:
            raise self.refuse(node, f"a {type(value).__name__} literal")
        return kind, lambda frame: value

    def _Name(self, node: ast.Name) -> tuple[str, Evaluator]:
        name = node.id
        if name.startswith("__"):
            raise self.refuse(node, "a dunder name")
        if self.columns is None:
            kind = ANY
        elif name not in self.columns:
            known = ", ".join(self.columns) or "none"
            raise ExpressionError(f"expression {_quoted(self.text)}: {self.part(node)} is not a clean column declared "
                                  f"before this one (those: {known}); {HINT}")
        else:
            kind = self.columns[name]
        self.used.add(name)
        return kind, lambda frame: frame.columns[name]

    def _BinOp(self, node: ast.BinOp) -> tuple[str, Evaluator]:
        op_type = type(node.op)
        if op_type not in _ARITHMETIC and op_type not in _LOGIC:
            raise self.refuse(node, _WHAT.get(op_type))
        left_kind, left = self.node(node.left)
        right_kind, right = self.node(node.right)
        if op_type in _LOGIC:
            self.expect(node.left, left_kind, (BOOL,), "an operand of & and |")
            self.expect(node.right, right_kind, (BOOL,), "an operand of & and |")
            return BOOL, self._combined(_LOGIC[op_type], left, right, BOOL)
        if op_type is ast.Add and TEXT in (left_kind, right_kind):
            self.expect(node.left, left_kind, (TEXT,), "an operand of + beside text (+ joins texts)")
            self.expect(node.right, right_kind, (TEXT,), "an operand of + beside text (+ joins texts)")
            return TEXT, self._combined(operator.add, left, right, TEXT)
        allowed = (NUMBER, TEXT) if op_type is ast.Add else (NUMBER,)
        role = "an operand of +" if op_type is ast.Add else "an operand of arithmetic"
        self.expect(node.left, left_kind, allowed, role)
        self.expect(node.right, right_kind, allowed, role)
        kind = ANY if ANY in (left_kind, right_kind) else NUMBER
        return kind, self._combined(_ARITHMETIC[op_type], left, right, NUMBER)

    @staticmethod
    def _combined(function: Callable, left: Evaluator, right: Evaluator, kind: str) -> Evaluator:
        def evaluate(frame: _Frame) -> Value:
            a, b = left(frame), right(frame)
            if not isinstance(a, pd.Series) and not isinstance(b, pd.Series):
                a = frame.series(a, kind)  # as a column, so that 1 / 0 is what it is on a column
            return function(a, b)
        return evaluate

    def _UnaryOp(self, node: ast.UnaryOp) -> tuple[str, Evaluator]:
        kind, operand = self.node(node.operand)
        if isinstance(node.op, (ast.Not, ast.Invert)):
            self.expect(node.operand, kind, (BOOL,), "the operand of not and ~")
            return BOOL, lambda frame: _negated(operand(frame))
        self.expect(node.operand, kind, (NUMBER,), "the operand of unary - and +")
        function = operator.neg if isinstance(node.op, ast.USub) else operator.pos
        return kind, lambda frame: function(operand(frame))

    def _BoolOp(self, node: ast.BoolOp) -> tuple[str, Evaluator]:
        parts = []
        for value in node.values:
            kind, evaluator = self.node(value)
            self.expect(value, kind, (BOOL,), "an operand of and/or")
            parts.append(evaluator)
        function = _LOGIC[type(node.op)]  # element-wise, as pandas.eval reads and/or

        def evaluate(frame: _Frame) -> Value:
            result = parts[0](frame)
            for part in parts[1:]:
                result = function(result, part(frame))
            return result
        return BOOL, evaluate

    def _Compare(self, node: ast.Compare) -> tuple[str, Evaluator]:
        for op in node.ops:
            if type(op) not in _COMPARISONS:
                raise self.refuse(node, _WHAT.get(type(op)))
        operands = [node.left, *node.comparators]
        compiled = [self.node(operand) for operand in operands]
        known = {kind for kind, _ in compiled} - {ANY}
        for operand, (kind, _) in zip(operands, compiled):
            self.expect(operand, kind, (TEXT, NUMBER, BOOL, DATE, TIMESTAMP), "a compared value")
        if len(known) > 1:
            raise self.wrong(node, f"compares values of different kinds ({', '.join(sorted(known))})")
        functions = [_COMPARISONS[type(op)] for op in node.ops]
        evaluators = [evaluator for _, evaluator in compiled]

        def evaluate(frame: _Frame) -> Value:
            values = [evaluator(frame) for evaluator in evaluators]
            result = None
            for function, a, b in zip(functions, values, values[1:]):
                if not isinstance(a, pd.Series) and not isinstance(b, pd.Series):
                    a = frame.series(a, NUMBER)
                holds = _null_where_missing(function(a, b), a, b)
                result = holds if result is None else result & holds
            return result
        return BOOL, evaluate

    def _IfExp(self, node: ast.IfExp) -> tuple[str, Evaluator]:
        test_kind, test = self.node(node.test)
        self.expect(node.test, test_kind, (BOOL,), "the condition of if-else")
        yes_kind, yes = self.node(node.body)
        no_kind, no = self.node(node.orelse)
        kind = self._unified(node, [(node.body, yes_kind), (node.orelse, no_kind)], "the two values of if-else")

        def evaluate(frame: _Frame) -> Value:
            condition = frame.series(test(frame), BOOL).astype("boolean")
            chosen = frame.series(yes(frame), kind).where(condition.fillna(False).astype(bool),
                                                          frame.series(no(frame), kind))
            return chosen.mask(condition.isna().to_numpy(bool))
        return kind, evaluate

    def _unified(self, node: ast.AST, kinds: list[tuple[ast.AST, str]], role: str) -> str:
        known = {kind for _, kind in kinds} - {ANY, NULL}
        if len(known) > 1:
            raise self.wrong(node, f"{role} are of different kinds ({', '.join(sorted(known))})")
        if known:
            return known.pop()
        return ANY if any(kind == ANY for _, kind in kinds) else NULL

    # -- attributes: only the accessor spellings
    def _Attribute(self, node: ast.Attribute) -> tuple[str, Evaluator]:
        accessor = node.value
        if isinstance(accessor, ast.Attribute) and accessor.attr == "dt" and node.attr in DT_ACCESSOR:
            return self.call(node, node.attr, [accessor.value], [])
        raise self.refuse_attribute(node)

    def _Subscript(self, node: ast.Subscript) -> tuple[str, Evaluator]:
        accessor = node.value
        if isinstance(accessor, ast.Attribute) and accessor.attr == "str" and isinstance(node.slice, ast.Slice):
            if node.slice.step is not None:
                raise self.refuse(node.slice.step, "a slice step")
            bounds = [node.slice.lower, node.slice.upper]
            if bounds[1] is None:
                bounds.pop()
            if bounds[0] is None:
                bounds[0] = ast.Constant(0)
            return self.call(node, "slice", [accessor.value, *bounds], [])
        raise self.refuse(node)

    def _Call(self, node: ast.Call) -> tuple[str, Evaluator]:
        target = node.func
        if isinstance(target, ast.Name):
            if target.id not in FUNCTIONS:
                raise self.refuse(target, "not a function of the language")
            return self.call(node, target.id, list(node.args), node.keywords)
        if isinstance(target, ast.Attribute):
            name, receiver = target.attr, target.value
            if isinstance(receiver, ast.Attribute) and receiver.attr == "str":
                if name not in STR_ACCESSOR:
                    raise self.refuse_attribute(target, f".str.{name}() is not a function of the language"
                                                if not name.startswith("_") else None)
                args = list(node.args)
                if name == "cat" and args and isinstance(args[0], ast.List):
                    args = args[0].elts + args[1:]  # pandas: x.str.cat([y, z], sep=...)
                return self.call(node, name, [receiver.value, *args], node.keywords)
            if name not in FUNCTIONS:
                raise self.refuse_attribute(target)
            return self.call(node, name, [receiver, *node.args], node.keywords)
        self.node(target)  # a lambda, a call's result, ...: named by its own refusal first
        raise self.refuse(target, "only the functions of the language are called")

    def refuse_attribute(self, node: ast.Attribute, what: str | None = None) -> ExpressionError:
        """The refusal of an attribute chain, quoted whole (`pd.io.common.os.system`), unless what it starts from is
        refused itself (`__import__('os')`)."""
        root = node
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name):
            self.node(root)
        return self.refuse(node, what or _attribute_problem(node.attr))

    def call(self, node: ast.AST, name: str, args: list[ast.AST], keywords: list[ast.keyword]) -> tuple[str, Evaluator]:
        function = FUNCTIONS[name]
        most = math.inf if function.variadic else len(function.parameters)
        if not function.required <= len(args) <= most:
            count = (f"{function.required} or more" if function.variadic else
                     f"{function.required}" if function.required == len(function.parameters) else
                     f"{function.required} to {len(function.parameters)}")
            raise self.wrong(node, f"{name} takes {count} arguments, not {len(args)}")
        kinds, evaluators = [], []
        for position, arg in enumerate(args):
            parameter = function.parameters[min(position, len(function.parameters) - 1)]
            if isinstance(arg, ast.Starred):
                raise self.refuse(arg)
            if parameter in ("int literal", "text literal"):
                value = self.literal(arg, int if parameter == "int literal" else str, name)
                evaluators.append(lambda frame, value=value: value)
                continue
            kind, evaluator = self.node(arg)
            if parameter == "same":
                pass  # unified with the others below
            elif parameter == ANY:
                if kind == NULL:
                    self.expect(arg, kind, (), f"the first argument of {name}")
            elif parameter == "text|number":
                self.expect(arg, kind, (TEXT, NUMBER), f"the argument of {name}")
            else:
                wanted = parameter if isinstance(parameter, tuple) else (parameter,)
                self.expect(arg, kind, wanted, f"an argument of {name}")
            kinds.append((arg, kind))
            evaluators.append(evaluator)
        options = {}
        for keyword in keywords:
            if keyword.arg is None or keyword.arg not in function.keywords:
                allowed = ", ".join(function.keywords) or "none"
                raise self.wrong(keyword.value, f"{name} takes no keyword {keyword.arg or '**'!r} "
                                                f"(its keywords: {allowed})")
            options[keyword.arg] = self.literal(keyword.value, str, name)
        first_kind = kinds[0][1]
        if function.result is None:
            first_kind = self._unified(node, kinds, f"the arguments of {name}")
        result = function.result or first_kind

        def evaluate(frame: _Frame) -> Value:
            values = [evaluator(frame) for evaluator in evaluators]
            values[0] = frame.series(values[0], first_kind)
            return function.apply(*values, **options)
        return result, evaluate

    def literal(self, node: ast.AST, kind: type, name: str) -> Any:
        value = node
        negative = isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub) and kind is int
        if negative:
            value = value.operand
        if (not isinstance(value, ast.Constant) or isinstance(value.value, bool)
                or not isinstance(value.value, kind)):
            wanted = "an integer literal" if kind is int else "a text literal"
            raise self.wrong(node, f"this argument of {name} is {wanted}")
        if kind is int and abs(value.value) >= MAX_EXACT_INTEGER:
            raise self.wrong(node, "an integer literal is less than 2**53 in size")
        return -value.value if negative else value.value


def _as_boolean(value: Value) -> Value:
    return value.astype("boolean") if isinstance(value, pd.Series) and value.dtype != "boolean" else value


def _null_where_missing(holds: pd.Series, *operands: Value) -> pd.Series:
    """A comparison with a null operand is null, whatever the dtype (numpy says NaN > 1 is False)."""
    holds = _as_boolean(holds)
    for operand in operands:
        if isinstance(operand, pd.Series):
            holds = holds.mask(operand.isna().to_numpy(bool))
    return holds


def _negated(value: Value) -> Value:
    return ~value if isinstance(value, pd.Series) else not value


def _attribute_problem(name: str) -> str:
    if name.startswith("__"):
        return "a dunder attribute"
    return (f"attribute .{name}: only the functions as methods (x.lower()), x.str.f(...), x.str[a:b] and x.dt."
            + "/".join(DT_ACCESSOR))
