"""Lexer and parser for the subset of Go's text/template language that utils.go_template_subset executes.

Text and `{{ }}` actions, with Go's trim markers (`{{- ` deletes the white space before, ` -}}` after) and
comments applied while lexing; actions become nodes (text, action, if/with/range with their else branch,
break, continue) whose pipelines are lists of commands of operands. Errors name the line and column.
"""

from __future__ import annotations

import json
import re

class TemplateError(ValueError):
    """The template does not parse or fails to execute (Go's engine would fail on it too)."""


class UnsupportedTemplate(TemplateError):
    """Valid Go perhaps, but outside the subset this renderer implements: check it with Go's engine."""


_SPACE = " \t\r\n"
_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<num>[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?))
  | (?P<decl>:=) | (?P<assign>=) | (?P<comma>,) | (?P<pipe>\|) | (?P<lp>\() | (?P<rp>\))
  | (?P<var>\$\w*) | (?P<field>(?:\.\w+)+) | (?P<dot>\.) | (?P<ident>[A-Za-z_]\w*)
""", re.X)
_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue"}
_UNSUPPORTED = {"define", "template", "block"}


def where(source: str, pos: int) -> str:
    """"line L, column C" of a character position, for error messages."""
    line = source.count("\n", 0, pos) + 1
    return f"line {line}, column {pos - (source.rfind(chr(10), 0, pos) + 1) + 1}"


def _lex(source: str) -> list:
    """[["text", str] | ["action", tokens, pos]] with the trim markers applied and the comments dropped."""
    items, pos, trim_next = [], 0, False
    while True:
        opening = source.find("{{", pos)
        text = source[pos:] if opening < 0 else source[pos:opening]
        items.append(["text", text.lstrip(_SPACE) if trim_next else text])
        if opening < 0:
            return items
        i = opening + 2
        if source.startswith("-", i) and source[i + 1 : i + 2] in tuple(_SPACE):
            items[-1][1] = items[-1][1].rstrip(_SPACE)
            i += 2
        while source[i : i + 1] in tuple(_SPACE):
            i += 1
        tokens, comment = [], source.startswith("/*", i)
        if comment:
            close = source.find("*/", i + 2)
            if close < 0:
                raise TemplateError(f"unclosed comment at {where(source, opening)}")
            i = close + 2
            while source[i : i + 1] in tuple(_SPACE):
                i += 1
        while True:
            if i >= len(source):
                raise TemplateError(f"unclosed action at {where(source, opening)}")
            trim_next = source.startswith("-}}", i) and source[i - 1] in _SPACE
            if trim_next or source.startswith("}}", i):
                pos = i + 3 if trim_next else i + 2
                break
            match = None if comment else _TOKEN.match(source, i)
            if not match:
                raise TemplateError(f"unexpected {source[i]!r} in {'comment' if comment else 'action'} at {where(source, i)}")
            if match.lastgroup != "space":
                tokens.append((match.lastgroup, match.group(), i))
            i = match.end()
        if not comment:
            items.append(["action", tokens, opening])


# ---------------------------------------------------------------- parsing: a list of nodes

class Parser:
    def __init__(self, source: str):
        self.source = source
        self.items = _lex(source)
        self.i = 0

    def parse(self) -> list:
        body, stop = self.block()
        if stop is not None:
            raise TemplateError(f"unexpected {{{{{stop[0]}}}}} at {where(self.source, stop[1])}")
        return body

    def block(self):
        """Nodes up to an else/end action (returned as (keyword, pos, tokens)) or the end of the template."""
        nodes = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if item[0] == "text":
                if item[1]:
                    nodes.append(("text", item[1]))
                continue
            tokens, pos = item[1], item[2]
            if not tokens:
                raise TemplateError(f"missing value for command at {where(self.source, pos)}")
            kind, word = tokens[0][0], tokens[0][1]
            if kind == "ident" and word in _UNSUPPORTED:
                raise UnsupportedTemplate(f"{{{{{word}}}}} at {where(self.source, pos)} is outside the subset this renderer supports")
            if kind == "ident" and word in ("else", "end"):
                return nodes, (word, pos, tokens[1:])
            if kind == "ident" and word in ("if", "with", "range"):
                nodes.append(self.control(word, tokens[1:], pos))
            elif kind == "ident" and word in ("break", "continue"):
                nodes.append((word, pos))
            else:
                nodes.append(("action", self.pipeline(tokens, pos), pos))
        return nodes, None

    def control(self, word: str, tokens: list, pos: int):
        if not tokens:
            raise TemplateError(f"missing value for {word} at {where(self.source, pos)}")
        pipe = self.pipeline(tokens, pos, allow_two=word == "range")
        body, stop = self.block()
        otherwise = []
        if stop is None:
            raise TemplateError(f"unexpected EOF: {{{{{word}}}}} at {where(self.source, pos)} has no {{{{end}}}}")
        if stop[0] == "else":
            rest = stop[2]
            if rest and rest[0][1] in ("if", "with") and word in ("if", "with") and rest[0][1] == word:
                otherwise = [self.control(word, rest[1:], stop[1])]  # else if: the nested chain shares this end
                return (word, pipe, body, otherwise, pos)
            if rest:
                raise UnsupportedTemplate(f"{{{{else {rest[0][1]}}}}} at {where(self.source, stop[1])} is outside the subset")
            otherwise, stop = self.block()
            if stop is None or stop[0] != "end":
                raise TemplateError(f"{{{{{word}}}}} at {where(self.source, pos)}: expected {{{{end}}}} after {{{{else}}}}")
        if stop[2]:
            raise TemplateError(f"unexpected tokens after end at {where(self.source, stop[1])}")
        return (word, pipe, body, otherwise, pos)

    def pipeline(self, tokens: list, pos: int, allow_two: bool = False):
        """(declared variables, "decl"|"assign"|None, commands); a command is a list of operands."""
        names, mode = [], None
        for n in (2, 1) if allow_two else (1,):
            shape = [t[0] for t in tokens[: 2 * n]]
            expected = ["var", "comma"] * (n - 1) + ["var"]
            if shape[: 2 * n - 1] == expected and len(tokens) > 2 * n - 1 and tokens[2 * n - 1][0] in ("decl", "assign"):
                names = [t[1] for t in tokens[: 2 * n - 1:2]]
                mode = tokens[2 * n - 1][0]
                tokens = tokens[2 * n:]
                break
        commands, current = [], []
        for op in self.operands(tokens, pos):
            if op == "|":
                if not current:
                    raise TemplateError(f"missing command before | at {where(self.source, pos)}")
                commands.append(current)
                current = []
            else:
                current.append(op)
        if not current:
            raise TemplateError(f"missing value for command at {where(self.source, pos)}")
        commands.append(current)
        return (names, mode, commands)

    def operands(self, tokens: list, pos: int) -> list:
        out, i = [], 0
        while i < len(tokens):
            kind, text, at = tokens[i]
            if kind == "lp":
                depth, j = 1, i + 1
                while j < len(tokens) and depth:
                    depth += {"lp": 1, "rp": -1}.get(tokens[j][0], 0)
                    j += 1
                if depth:
                    raise TemplateError(f"unclosed left paren at {where(self.source, at)}")
                inner = self.pipeline(tokens[i + 1 : j - 1], at)
                out.append(("pipe", inner))
                i = j
                if i < len(tokens) and tokens[i][0] == "field":  # (expr).Field
                    out[-1] = ("chain", out[-1], tokens[i][1][1:].split("."))
                    i += 1
                continue
            if kind == "pipe":
                out.append("|")
            elif kind in ("str", "raw", "char", "num"):
                out.append(("lit", _literal(kind, text, self.source, at)))
            elif kind == "field":
                out.append(("field", text[1:].split(".")))
            elif kind == "dot":
                out.append(("field", []))
            elif kind == "var":
                out.append(("var", text, []))
                if i + 1 < len(tokens) and tokens[i + 1][0] == "field" and tokens[i + 1][2] == at + len(text):
                    out[-1] = ("var", text, tokens[i + 1][1][1:].split("."))
                    i += 1
            elif kind == "ident":
                if text in ("true", "false"):
                    out.append(("lit", text == "true"))
                elif text == "nil":
                    out.append(("lit", None))
                elif text in _KEYWORDS:
                    raise TemplateError(f"unexpected {text} in command at {where(self.source, at)}")
                else:
                    out.append(("func", text, at))
            else:
                raise TemplateError(f"unexpected {text!r} in command at {where(self.source, at)}")
            i += 1
        return out


def _literal(kind: str, text: str, source: str, at: int):
    if kind == "raw":
        return text[1:-1]
    if kind == "str":
        try:
            return json.loads(text) if "\\x" not in text and "\\'" not in text else bytes(text[1:-1], "utf-8").decode("unicode_escape")
        except ValueError as err:
            raise TemplateError(f"bad string literal {text} at {where(source, at)}") from err
    if kind == "char":
        raise UnsupportedTemplate(f"character constant {text} at {where(source, at)} is outside the subset")
    clean = text.replace("_", "")
    try:
        return int(clean, 0)
    except ValueError:
        return float(clean)
