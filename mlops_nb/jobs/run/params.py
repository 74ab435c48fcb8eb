"""A notebook's declared parameters, and checking what a user gives against them.

A notebook declares its parameters in the code cell tagged ``parameters`` (papermill's
convention): each top-level ``name = value`` or ``name: type = value`` is one parameter.
Values a user gives (``-p NAME=VALUE``, a YAML file, or Python values) are checked and
converted here, before any kernel starts, so a typo or a value of the wrong type fails
in a second with the list of accepted parameters instead of minutes into a run.

The notebook is read as JSON and its parameters cell parsed with :mod:`ast`: importing
papermill or nbformat costs more than a second each, papermill's own inspection is a line
regex that misreads multi-line values, and papermill's ``-p`` turns ``tag=1.10`` into the
float 1.1 whatever the notebook declares.

Every value that comes out is plain data (None, bool, int, float, str, list, dict with
str keys), because that is what papermill injects faithfully; anything else it would
turn into a string behind the user's back.
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import io
import itertools
import json
import keyword
import numbers
import os
import re
import tokenize
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_nb.exceptions import UsageError

__all__ = [
    "TYPE_NAMES",
    "NotebookFile",
    "Parameter",
    "check_params",
    "declared_parameters",
    "expand_grid",
    "known_parameters",
    "load_params_file",
    "notebook_kernel",
    "parameters_in",
    "parse_assignments",
    "read_notebook",
    "unique_key_loader",
]

#: The types a parameter can declare; ``any`` takes every plain value.
TYPE_NAMES = ("int", "float", "str", "bool", "list", "dict", "any")

# Annotation names (bare, or the last part of ``typing.X``) and what they declare.
_ANNOTATIONS = {
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "list": "list",
    "List": "list",
    "dict": "dict",
    "Dict": "dict",
    "Any": "any",
    "object": "any",
}

# What to give instead, by type: the tail of every "wrong type" message.
_EXPECTED = {
    "int": "a whole number such as 5",
    "float": "a number such as 0.1",
    "str": "text",
    "bool": "true or false",
    "list": "a list such as [1, 2] (JSON or Python)",
    "dict": 'a mapping such as {"a": 1} (JSON or Python)',
    "any": "a number, text, true/false, a list or a mapping",
}

_BOOL_TEXT = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_IPYTHON_LINE = re.compile(r"^\s*[%!?]")


@dataclass(frozen=True)
class Parameter:
    """One parameter declared in a notebook's ``parameters`` cell.

    ``type_name`` is one of :data:`TYPE_NAMES`: the annotation when there is one we
    understand, else the type of the literal default (``None``, a tuple and any
    expression that is not a literal declare ``any``). ``default`` is the literal value;
    for a default that is an expression (``os.environ["X"]``) it is that expression's
    source text, and for ``x: int`` without a value it is ``None``. ``default_text`` is
    the default exactly as written in the cell (empty without one). ``help`` is the
    inline ``# comment`` of the assignment. ``optional`` is true when ``None`` is an
    accepted value: the default is ``None``, or the annotation says ``X | None`` /
    ``Optional[X]``.
    """

    name: str
    type_name: str
    default: Any
    help: str = ""
    default_text: str = ""
    optional: bool = False

    def accepts_none(self) -> bool:
        """True when ``None`` is a valid value for this parameter."""
        return self.optional or self.type_name == "any"

    def describe(self) -> str:
        """``n_estimators (int, default 100)``: how the parameter is listed in messages."""
        if not self.default_text:
            return f"{self.name} ({self.type_name}, required)"
        # One line, whatever the cell's layout: a literal as Python shows it, an
        # expression with its whitespace collapsed; long ones cut.
        literal = _literal(self.default_text)
        shown = " ".join(self.default_text.split()) if literal is _NOT_LITERAL else repr(literal)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        return f"{self.name} ({self.type_name}, default {shown})"


# ------------------------------------------------------------------ the notebook


@dataclass(frozen=True)
class NotebookFile:
    """A notebook file as one job reads it, once: its cells, the kernel its metadata
    names (papermill's default; ``python3`` when it names none) and its SHA-256 (so a
    worker can check that it runs the same notebook)."""

    path: Path
    cells: list[dict[str, Any]]
    kernel: str
    sha256: str


def read_notebook(notebook: str | os.PathLike[str]) -> NotebookFile:
    """Read and parse a notebook file once, for everything a job needs to know of it.

    Raises
    ------
    UsageError
        The notebook is missing, unreadable or not a notebook.
    """
    path = Path(notebook)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"notebook {str(path)!r} not found; give the path to an .ipynb file") from None
    except IsADirectoryError:
        raise UsageError(f"{str(path)!r} is a folder, not a notebook; give the path to an .ipynb file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read notebook {str(path)!r} ({exc}); check the path and its permissions") from None
    try:
        content = json.loads(text)
        cells = content["cells"]
        if not isinstance(cells, list):
            raise TypeError("cells is not a list")
    except ValueError as exc:
        raise UsageError(
            f"{path.name} is not a notebook (invalid JSON: {exc}); give the path to an .ipynb file"
        ) from None
    except (KeyError, TypeError):
        raise UsageError(
            f"{path.name} is not a notebook (it has no list of cells); give the path to an .ipynb file"
        ) from None
    return NotebookFile(path, cells, _kernel_of(content), hashlib.sha256(data).hexdigest())


def _kernel_of(content: Any) -> str:
    try:
        name = content["metadata"]["kernelspec"]["name"]
        return name if isinstance(name, str) and name else "python3"
    except (KeyError, TypeError):
        return "python3"


def notebook_kernel(path: str | os.PathLike[str]) -> str:
    """The kernel the notebook names in its metadata (papermill's default), else python3."""
    try:
        return _kernel_of(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return "python3"


def declared_parameters(notebook: str | os.PathLike[str]) -> dict[str, Parameter] | None:
    """The parameters the notebook's ``parameters`` cell declares, in cell order.

    Returns ``None`` when no code cell is tagged ``parameters`` (and ``{}`` when the cell
    assigns nothing). A name assigned twice keeps its first position and its last value,
    as the kernel would. IPython lines (``%magic``, ``!cmd``) in the cell are skipped.

    Raises
    ------
    UsageError
        The notebook is missing, not a notebook, or its parameters cell does not parse.
    """
    return parameters_in(read_notebook(notebook))


def parameters_in(notebook: NotebookFile) -> dict[str, Parameter] | None:
    """The parameters declared by a notebook already read (see :func:`declared_parameters`)."""
    for cell in notebook.cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        tags = (cell.get("metadata") or {}).get("tags") or []
        if "parameters" in tags:
            source = cell.get("source", "")
            return _parse_parameters_cell(
                "".join(source) if isinstance(source, list) else str(source), notebook.path.name
            )
    return None


def _parse_parameters_cell(source: str, notebook: str) -> dict[str, Parameter]:
    # IPython syntax is valid in a cell but not in Python: blank it, keeping line numbers.
    lines = ["" if _IPYTHON_LINE.match(line) else line for line in source.splitlines()]
    code = "\n".join(lines)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "\d" in a string: the kernel warns, we need not
            tree = ast.parse(code)
    except SyntaxError as exc:
        raise UsageError(
            f"the parameters cell of {notebook} does not parse (line {exc.lineno}: {exc.msg}); fix the cell"
        ) from None
    comments = _comments_by_line(code)
    found: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = [t for t in node.targets if isinstance(t, ast.Name)]
            annotation = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target]
            annotation = node.annotation
        else:
            continue
        help_text = comments.get(node.end_lineno or node.lineno) or comments.get(node.lineno, "")
        for target in targets:
            found[target.id] = _parameter(target.id, annotation, node.value, code, help_text)
    return found


def _parameter(name: str, annotation: ast.expr | None, value: ast.expr | None, code: str, help_text: str) -> Parameter:
    default_text = (ast.get_source_segment(code, value) or "") if value is not None else ""
    default: Any = None
    literal_type = "any"
    if value is not None:
        default = _literal(value)
        if default is _NOT_LITERAL:
            default = default_text  # an expression: only the kernel knows its value
        else:
            literal_type = _type_of(default)
    type_name, optional = _annotation_type(annotation) if annotation is not None else (None, False)
    return Parameter(
        name=name,
        type_name=type_name or literal_type,
        default=default,
        help=help_text,
        default_text=default_text,
        optional=optional or (value is not None and default is None),
    )


def _type_of(value: Any) -> str:
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list), ("dict", dict)):
        if isinstance(value, kind):
            return name
    return "any"


def _annotation_type(node: ast.expr) -> tuple[str | None, bool]:
    """(type name, whether None is allowed) of an annotation; None when not understood."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # x: "int" = 3
        try:
            return _annotation_type(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return None, False
    if isinstance(node, ast.Constant) and node.value is None:
        return None, True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | None
        parts = _union_members(node)
        return _union_type(parts)
    if isinstance(node, ast.Subscript):
        base = _dotted_last(node.value)
        if base == "Optional":
            inner, _ = _annotation_type(node.slice)
            return inner, True
        if base == "Union":
            members = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
            return _union_type(members)
        return _ANNOTATIONS.get(base or ""), False  # list[int] -> list
    return _ANNOTATIONS.get(_dotted_last(node) or ""), False


def _union_members(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union_members(node.left) + _union_members(node.right)
    return [node]


def _union_type(members: list[ast.expr]) -> tuple[str | None, bool]:
    optional = any(isinstance(m, ast.Constant) and m.value is None for m in members)
    others = [m for m in members if not (isinstance(m, ast.Constant) and m.value is None)]
    if len(others) == 1:
        return _annotation_type(others[0])[0], optional
    types = {_annotation_type(m)[0] for m in others}
    # int | float takes what float takes; any other mix is left to the kernel.
    return ("float" if types == {"int", "float"} else "any"), optional


def _dotted_last(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _comments_by_line(code: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass  # the cell parsed, so this cannot happen; without help texts all still works
    return comments


# ------------------------------------------------------------------ what the user gives


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """``["n=10", "name=a b"]`` -> ``{"n": "10", "name": "a b"}``, values left as text.

    The value is everything after the first ``=``, verbatim. Raises :class:`UsageError`
    for a pair without ``=``, a name that is not a Python identifier, or a name given
    twice.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier() or keyword.iskeyword(name):
            raise UsageError(f"-p expects NAME=VALUE, got {pair!r}; NAME is a parameter of the notebook")
        if name in out:
            raise UsageError(
                f"-p {name} is given twice ({out[name]!r} and {value!r}); give it once"
                f" (a sweep takes a comma-separated list: -p {name}=a,b)"
            )
        out[name] = value
    return out


def load_params_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping of parameter names to values in a YAML file (``{}`` when it is empty).

    Raises :class:`UsageError` naming the file when it is missing, is not valid YAML
    (with the line), repeats a name, or its top level is not a mapping of names.
    """
    import yaml  # cheap, but only the file path needs it

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"parameters file {str(p)!r} not found; check the path given to -f") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read parameters file {str(p)!r} ({exc}); check the path given to -f") from None
    try:
        data = yaml.load(text, Loader=unique_key_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        what = exc.problem or exc.context or "invalid YAML"
        raise UsageError(f"parameters file {str(p)!r} is not valid YAML{where}: {what}; fix the file") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"parameters file {str(p)!r} is not valid YAML ({exc}); fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"parameters file {str(p)!r} must be a mapping of names to values (name: value per line),"
            f" not a {type(data).__name__}"
        )
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise UsageError(
            f"parameters file {str(p)!r} has a name that is not text ({bad[0]!r}); names are parameter names"
        )
    return dict(data)


@functools.cache
def unique_key_loader() -> type:
    # Built on first use so that importing this module does not import yaml.
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """Refuses a name given twice: PyYAML would silently keep the last one."""

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


# ------------------------------------------------------------------ checking


def check_params(
    declared: dict[str, Parameter] | None,
    values: dict[str, Any],
    *,
    texts: dict[str, str] | None = None,
    notebook: str = "",
) -> dict[str, Any]:
    """Check given parameters against the declared ones; return them converted.

    ``values`` are Python values (from a YAML file or a Python caller) and must already
    have the declared type (an int is accepted for a float and becomes a float; a bool is
    not an int; ``None`` only where :meth:`Parameter.accepts_none`). ``texts`` are raw
    ``-p`` strings, converted by the declared type with no quoting needed: a ``str``
    parameter takes the text verbatim (``1.10`` stays ``"1.10"``), ``int`` what Python's
    ``int()`` reads (``1_000``, ``+5``; not ``1.5``), ``float`` what ``float()`` reads,
    ``bool`` true/false/yes/no/1/0, ``list``
    and ``dict`` JSON or a Python literal, ``any`` a Python literal or else the text.
    A name in both takes the text (``-p`` overrides ``-f``).

    Returns only the given names, in the order the notebook declares them.

    Raises
    ------
    UsageError
        An unknown name (listing what the notebook accepts, with a close match), a value
        that does not fit, or any value for a notebook without a parameters cell.
    """
    texts = texts or {}
    where = notebook or "the notebook"
    params = known_parameters(declared, [*values, *texts], where)
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in texts:
            out[name] = _check_value(params[name], value, where)
    for name, text in texts.items():
        out[name] = _convert_text(params[name], text, where)
    return {name: out[name] for name in params if name in out}


def expand_grid(
    declared: dict[str, Parameter] | None,
    texts: dict[str, str],
    values: dict[str, Any] | None = None,
    *,
    notebook: str = "",
) -> list[dict[str, Any]]:
    """The runs of a sweep: the cartesian product of each parameter's values.

    Each text may be a comma-separated list (``-p n_estimators=10,50,100``), each element
    converted as :func:`check_params` does; whitespace around the commas is dropped. A
    comma inside brackets, braces or quotes does not split, so ``-p layers=[64,32],[128]``
    is two lists. A ``str`` parameter splits on every comma. In ``values`` a list is the
    grid for that name unless the parameter is a ``list``. A name in both takes the text.

    The first name varies slowest: names from ``values`` first, then the texts, each in
    the order given. Every dict holds all given names, in declared order. With nothing
    given the result is one run with the defaults: ``[{}]``.

    Raises
    ------
    UsageError
        As :func:`check_params`, and for an empty element (``10,,50``) or an empty list.
    """
    values = values or {}
    where = notebook or "the notebook"
    params = known_parameters(declared, [*values, *texts], where)
    axes: dict[str, list[Any]] = {}
    for name, value in values.items():
        if name in texts:
            continue
        param = params[name]
        if isinstance(value, list) and param.type_name != "list":
            if not value:
                raise UsageError(f"parameter {name!r} of {where} has an empty list of values; give at least one")
            axes[name] = [_check_value(param, v, where) for v in value]
        else:
            axes[name] = [_check_value(param, value, where)]
    for name, text in texts.items():
        param = params[name]
        parts = text.split(",") if param.type_name == "str" else _split_top_level(text)
        if len(parts) > 1:
            parts = [part.strip() for part in parts]
            if any(part == "" for part in parts):
                raise UsageError(f"-p {name}={text} has an empty value between commas; remove the extra comma")
        axes[name] = [_convert_text(param, part, where) for part in parts]
    order = [n for n in params if n in axes]
    runs = []
    for combo in itertools.product(*axes.values()):
        row = dict(zip(axes, combo))
        runs.append({n: row[n] for n in order})
    return runs


def known_parameters(declared: dict[str, Parameter] | None, given: list[str], where: str) -> dict[str, Parameter]:
    """The declared parameters, after refusing names the notebook does not declare."""
    if declared is None:
        if given:
            names = ", ".join(dict.fromkeys(given))
            raise UsageError(
                f"{where} has no cell tagged 'parameters'; add one (papermill's convention: a code cell"
                f" tagged 'parameters' that assigns each parameter its default) to pass {names}"
            )
        return {}
    unknown = [n for n in dict.fromkeys(given) if n not in declared]
    if not unknown:
        return declared
    accepted = ", ".join(p.describe() for p in declared.values()) or "nothing (its parameters cell assigns no names)"
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(declared), n=1)
        if close:
            prefix = f"{name!r}: " if len(unknown) > 1 else ""
            hints.append(f"{prefix}did you mean {close[0]!r}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    label = "parameter" if len(unknown) == 1 else "parameters"
    names = ", ".join(repr(n) for n in unknown)
    raise UsageError(f"unknown {label} {names} for {where}{hint}; it accepts: {accepted}")


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, braces, parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _wrong(param: Parameter, shown: str, where: str, extra: str = "") -> UsageError:
    return UsageError(
        f"parameter {param.name!r} of {where} takes {param.type_name}, got {shown}; give"
        f" {_EXPECTED[param.type_name]}{extra}"
    )


def _convert_text(param: Parameter, text: str, where: str) -> Any:
    kind = param.type_name
    word = text.strip()
    if kind == "str":
        return text
    if param.accepts_none() and word in ("None", "null") and kind != "any":
        return None
    if kind in ("int", "float"):
        number = _number(kind, word)
        if number is not None:
            return number
        raise _wrong(param, repr(text), where)
    if kind == "bool":
        if word.lower() in _BOOL_TEXT:
            return _BOOL_TEXT[word.lower()]
        raise _wrong(param, repr(text), where)
    if kind in ("list", "dict"):
        want = list if kind == "list" else dict
        value = _parse_literal(word)
        if isinstance(value, want):
            return _check_value(param, value, where)
        raise _wrong(param, repr(text), where)
    # any: a Python literal when the text is one, else the text itself.
    value = _literal(word)
    if value is _NOT_LITERAL:
        return text
    return _check_value(param, value, where, shown=repr(text))


def _number(kind: str, text: str) -> int | float | None:
    """``text`` as Python's ``int()`` or ``float()`` reads it (``1_000``, ``+5``, `` 7 ``,
    ``1e3``, ``inf``), or ``None``: a command line takes what Python takes, and ``1.5``
    stays refused for an int."""
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        return None


_NOT_LITERAL = object()


def _literal(source: str | ast.expr) -> Any:
    """``ast.literal_eval`` of ``source``, or ``_NOT_LITERAL`` when it is not a literal."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.literal_eval(source)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _parse_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _literal(text)


def _check_value(param: Parameter, value: Any, where: str, shown: str | None = None) -> Any:
    kind = param.type_name
    shown = shown or f"{value!r} ({type(value).__name__})"
    if value is None:
        if param.accepts_none():
            return None
        raise _wrong(param, "None", where, " (None only where the default is None)")
    # numpy and friends: papermill would inject np.int64(3) as the text "3".
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
        value = int(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
        value = float(value)
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in ("str", "bool") and isinstance(value, _PY_TYPES[kind]):
        return value
    if kind == "any" or (kind in ("list", "dict") and isinstance(value, _PY_TYPES[kind])):
        problem = _plain_problem(value)
        if problem:
            raise UsageError(
                f"parameter {param.name!r} of {where} got {shown}, which papermill cannot pass to a"
                f" notebook ({problem}); use numbers, text, true/false, lists and mappings with text keys"
            )
        return value
    extra = ""
    if kind == "str":
        # YAML reads 1.10 as 1.1, no as False and 2024-01-01 as a date: quoting keeps the text.
        extra = f' (in YAML, quote it: {param.name}: "...")'
    elif kind in ("int", "float") and isinstance(value, str) and _number("float", value) is not None:
        extra = " without quotes"
        if "e" in value.lower():
            extra += " (PyYAML reads 1e3 as text: write 1.0e+3)"
    raise _wrong(param, shown, where, extra)


_PY_TYPES: dict[str, type] = {"str": str, "bool": bool, "list": list, "dict": dict}


def _plain_problem(value: Any, depth: int = 0) -> str:
    """Why ``value`` is not plain data papermill injects as is; empty when it is."""
    if depth > 100:
        return "nested too deeply"
    if value is None or isinstance(value, (bool, int, str)):
        return ""
    if isinstance(value, float):
        return ""
    if isinstance(value, list):
        for item in value:
            problem = _plain_problem(item, depth + 1)
            if problem:
                return problem
        return ""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"the key {key!r} is not text"
            problem = _plain_problem(item, depth + 1)
            if problem:
                return problem
        return ""
    return f"a value of type {type(value).__name__}"
