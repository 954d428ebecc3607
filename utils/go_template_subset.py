"""A renderer for the part of Go's text/template language that Ollama Modelfile TEMPLATEs use, in Python.

This module executes; utils.go_template_parse lexes and parses.

Go's real engine (PyPI `go-template`) ships a prebuilt library for x86-64 Linux only; on a DGX Spark
(aarch64) or a Mac it cannot load, and a check that fell back to "looks about right" there would pass a
template one newline off that fails on an x86 grader. This renderer keeps the check as strict everywhere.
It is tested against Go's own output on x86-64 (tests/test_modelfile.py) for every conversation the
course checks and every template it writes.

Supported: text with `{{-` / `-}}` trim markers, comments, `.Field` chains, `$`, `$var` (declared with
`:=`, assigned with `=`), string/number/bool/nil literals, parentheses, pipes (`|`), `if` / `else if` /
`else`, `range` (over a list or a map, with `$i, $v :=` or `$v :=`, and `else`), `with`, `break`,
`continue`, and the functions and, or, not, eq, ne, lt, le, gt, ge, len, index, slice and print.
Anything else (define, template, block, printf, Ollama's json and currentDate, ...) raises
`UnsupportedTemplate`, so a caller says "cannot check here" instead of guessing. Values are what YAML or
JSON give: dicts, lists, str, int, float, bool, None. A missing map key prints "<no value>", as in Go.
"""

from __future__ import annotations

from utils.go_template_parse import Parser, TemplateError, UnsupportedTemplate, where

__all__ = ["render", "UnsupportedTemplate", "TemplateError"]

_MISSING = type("Missing", (), {"__repr__": lambda self: "<no value>"})()  # a map's missing key

_Break = type("_Break", (Exception,), {})  # {{ break }} and {{ continue }} unwind to their range
_Continue = type("_Continue", (Exception,), {})


def _truth(value) -> bool:
    """Go's truth: false, 0, nil, and empty strings, lists and maps are false; everything else is true."""
    if value is _MISSING or value is None:
        return False
    return bool(value) if isinstance(value, (bool, int, float, str, list, tuple, dict)) else True


def _kind(value) -> str:
    kinds = ((bool, "bool"), ((int, float), "number"), (str, "string"))
    return next((name for types, name in kinds if isinstance(value, types)), "other")


def _compare(a, b, op: str):
    if _kind(a) != _kind(b) or _kind(a) == "other":
        if op in ("eq", "ne") and (a is None or a is _MISSING or b is None or b is _MISSING):
            same = (a in (None, _MISSING)) and (b in (None, _MISSING))
            return same if op == "eq" else not same
        raise TemplateError(f"error calling {op}: incompatible types for comparison ({_kind(a)} and {_kind(b)})")
    if _kind(a) == "bool" and op not in ("eq", "ne"):
        raise TemplateError(f"error calling {op}: invalid type for comparison")
    return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]


def _format(value) -> str:
    """fmt.Sprint of a value, as {{ }} prints it."""
    if value is _MISSING or value is None:  # a missing key, or a YAML/JSON null: a nil interface to Go
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e21 else str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_format(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{_format(k)}:{_format(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _index(item, *keys):
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key, _MISSING)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"error calling index: cannot index slice/array with type {_kind(key)}")
            if not 0 <= key < len(item):
                raise TemplateError(f"error calling index: index out of range: {key}")
            item = item[key] if not isinstance(item, str) else item.encode()[key]
        else:
            raise TemplateError(f"error calling index: can't index item of type {_kind(item)}")
    return item


def _slice(item, *bounds):
    if not isinstance(item, (list, tuple, str)):
        raise TemplateError(f"error calling slice: can't slice item of type {_kind(item)}")
    if len(bounds) > 2:
        raise UnsupportedTemplate("slice with three indices is outside the subset")
    data = item.encode() if isinstance(item, str) else item
    low, high = (list(bounds) + [0, len(data)][len(bounds):])[:2]
    if not 0 <= low <= high <= len(data):
        raise TemplateError(f"error calling slice: index out of range: {low}:{high}")
    return data[low:high].decode("utf-8", errors="strict") if isinstance(item, str) else list(data[low:high])


def _length(item):
    if isinstance(item, str):
        return len(item.encode())  # Go's len of a string counts bytes
    if isinstance(item, (list, tuple, dict)):
        return len(item)
    raise TemplateError(f"error calling len: len of type {_kind(item)}")


def _print(*args):
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_format(arg))
    return "".join(out)


_FUNCS = {
    "not": lambda x: not _truth(x), "len": _length, "index": _index, "slice": _slice, "print": _print,
    **{op: (lambda op: lambda a, *rest: any(_compare(a, b, "eq") for b in rest) if op == "eq" else _compare(a, rest[0], op))(op)
       for op in ("eq", "ne", "lt", "le", "gt", "ge")},
}


class _Run:
    def __init__(self, source: str, data):
        self.source, self.root, self.out = source, data, []
        self.scopes = [{"$": data}]

    def nodes(self, nodes: list, dot):
        for node in nodes:
            kind = node[0]
            if kind == "text":
                self.out.append(node[1])
            elif kind == "action":
                value = self.pipeline(node[1], dot, node[2])
                if not node[1][0]:  # a declaration or assignment prints nothing
                    self.out.append(_format(value))
            elif kind in ("if", "with"):
                self.scopes.append({})
                try:
                    value = self.pipeline(node[1], dot, node[4])
                    if _truth(value):
                        self.nodes(node[2], value if kind == "with" else dot)
                    else:
                        self.nodes(node[3], dot)
                finally:
                    self.scopes.pop()
            elif kind == "range":
                self.range(node, dot)
            elif kind == "break":
                raise _Break()
            elif kind == "continue":
                raise _Continue()

    def range(self, node, dot):
        (names, mode, commands), body, otherwise, pos = node[1], node[2], node[3], node[4]
        self.scopes.append({})
        try:
            value = self.pipeline(([], None, commands), dot, pos)
            if isinstance(value, dict):
                pairs = [(k, value[k]) for k in sorted(value)]
            elif isinstance(value, (list, tuple)):
                pairs = list(enumerate(value))
            elif value is None or value is _MISSING:
                pairs = []
            else:
                raise TemplateError(f"range can't iterate over {_format(value)} at {where(self.source, pos)}")
            if not pairs:
                self.nodes(otherwise, dot)
            for key, element in pairs:
                scope = {}
                if len(names) == 2:
                    scope = {names[0]: key, names[1]: element}
                elif names:
                    scope = {names[0]: element}
                self.scopes.append(scope)
                try:
                    self.nodes(body, element)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    self.scopes.pop()
        finally:
            self.scopes.pop()

    def lookup(self, name: str, pos: int):
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise TemplateError(f'undefined variable "{name}" at {where(self.source, pos)}')

    def pipeline(self, pipe, dot, pos: int):
        names, mode, commands = pipe
        value, have = None, False
        for command in commands:
            value = self.command(command, dot, pos, (value,) if have else ())
            have = True
        if mode == "decl":
            self.scopes[-1][names[0]] = value
        elif mode == "assign":
            for scope in reversed(self.scopes):
                if names[0] in scope:
                    scope[names[0]] = value
                    break
            else:
                raise TemplateError(f'undefined variable "{names[0]}" at {where(self.source, pos)}')
        return value

    def command(self, command: list, dot, pos: int, piped: tuple):
        head = command[0]
        if head[0] == "func":
            name = head[1]
            if name in ("and", "or"):  # short-circuit, as Go 1.18+: the first deciding argument is the result
                args = command[1:]
                values = [lambda a=a: self.operand(a, dot, pos) for a in args] + [lambda: piped[0]] * len(piped)
                if not values:
                    raise TemplateError(f"wrong number of args for {name} at {where(self.source, head[2])}")
                result = None
                for get in values:
                    result = get()
                    if _truth(result) != (name == "and"):
                        return result
                return result
            if name not in _FUNCS:
                raise UnsupportedTemplate(f'function "{name}" at {where(self.source, head[2])} is outside the subset this renderer supports')
            args = [self.operand(a, dot, pos) for a in command[1:]] + list(piped)
            try:
                return _FUNCS[name](*args)
            except TypeError as err:
                raise TemplateError(f"wrong number of args for {name} at {where(self.source, head[2])}") from err
        if len(command) > 1 or piped:
            raise TemplateError(f"can't give an argument to a non-function at {where(self.source, pos)}")
        return self.operand(head, dot, pos)

    def operand(self, op, dot, pos: int):
        kind = op[0]
        if kind == "lit":
            return op[1]
        if kind == "pipe":
            self.scopes.append({})
            try:
                return self.pipeline(op[1], dot, pos)
            finally:
                self.scopes.pop()
        if kind == "chain":
            return self.fields(self.operand(op[1], dot, pos), op[2], pos)
        if kind == "field":
            return self.fields(dot, op[1], pos)
        if kind == "var":
            return self.fields(self.lookup(op[1], pos), op[2], pos)
        if kind == "func":
            return self.command([op], dot, pos, ())
        raise TemplateError(f"cannot evaluate {op!r}")

    def fields(self, value, names: list, pos: int):
        for name in names:
            if isinstance(value, dict):
                value = value.get(name, _MISSING)
            elif value is _MISSING:  # a field of a missing key: Go gives the zero value again
                continue
            else:
                raise TemplateError(f"can't evaluate field {name} in type {_kind(value)} at {where(self.source, pos)}")
        return value


def render(template: str, values) -> str:
    """`template` executed on `values` as Go's text/template would (within the subset above), or an error saying why not."""
    run = _Run(template, values)
    try:
        run.nodes(Parser(template).parse(), values)
    except (_Break, _Continue):
        raise TemplateError("{{break}} or {{continue}} outside a range") from None
    return "".join(run.out)
