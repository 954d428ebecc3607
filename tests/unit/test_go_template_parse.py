"""utils.go_template_parse: Go's trim markers and comments, the node shapes the renderer executes, and errors that
name the line and column (what a Modelfile author reads when their TEMPLATE is wrong)."""

import pytest

from utils.go_template_parse import Parser, TemplateError, UnsupportedTemplate, _lex, where


def parse(source):
    return Parser(source).parse()


def test_trim_markers_delete_white_space_on_their_side_only():
    items = _lex("  a  \n {{- .X -}} \n  b  {{ .Y }}  c")
    texts = [item[1] for item in items if item[0] == "text"]
    assert texts == ["  a", "b  ", "  c"]


def test_a_dash_without_a_space_is_a_number_not_a_trim_marker():
    assert _lex("x {{-3}} y") == [["text", "x "], ["action", [("num", "-3", 4)], 2], ["text", " y"]]


def test_comments_are_dropped_and_keep_their_trim_markers():
    assert parse("a {{- /* note */ -}} b") == [("text", "a"), ("text", "b")]


def test_fields_variables_and_pipes_become_commands_of_operands():
    [(kind, (names, mode, commands), pos)] = parse('{{ $x := .Messages.Content | printf "%s" }}')
    assert (kind, names, mode, pos) == ("action", ["$x"], "decl", 0)
    assert commands == [[("field", ["Messages", "Content"])], [("func", "printf", 29), ("lit", "%s")]]


def test_range_declares_index_and_element():
    [(word, (names, mode, _), body, otherwise, _)] = parse("{{ range $i, $m := .Messages }}{{ $m.Role }}{{ end }}")
    assert (word, names, mode, otherwise) == ("range", ["$i", "$m"], "decl", [])
    assert body == [("action", ([], None, [[("var", "$m", ["Role"])]]), 31)]


def test_else_if_nests_under_the_first_if_and_shares_its_end():
    [node] = parse("{{ if .A }}a{{ else if .B }}b{{ else }}c{{ end }}")
    word, _, body, [nested], _ = node
    assert (word, body) == ("if", [("text", "a")])
    assert nested[0] == "if" and nested[2] == [("text", "b")] and nested[3] == [("text", "c")]


@pytest.mark.parametrize("text, value", [("0x1F", 31), ("1_000", 1000), ("2.5", 2.5), ("`raw \\n`", "raw \\n"), ('"a\\tb"', "a\tb"),
                                         ("true", True), ("nil", None)])
def test_literals_take_their_go_values(text, value):
    [(_, (_, _, [[(kind, got)]]), _)] = parse("{{ " + text + " }}")
    assert kind == "lit" and got == value and type(got) is type(value)


@pytest.mark.parametrize("source, message", [
    ("ok\n  {{ .X ", "unclosed action at line 2, column 3"),
    ("{{ if .X }}yes", "{{if}} at line 1, column 1 has no {{end}}"),
    ("a\n{{ end }}", "unexpected {{end}} at line 2, column 1"),
    ("{{ }}", "missing value for command at line 1, column 1"),
    ("{{ /* open }}", "unclosed comment at line 1, column 1"),
    ("x\n {{ .A | }}", "missing value for command at line 2, column 2"),
    ("{{ (.A }}", "unclosed left paren at line 1, column 4"),
    ("{{ .A ; }}", "unexpected ';' in action at line 1, column 7"),
])
def test_errors_name_line_and_column(source, message):
    with pytest.raises(TemplateError, match=None) as caught:
        parse(source)
    assert message in str(caught.value)
    assert not isinstance(caught.value, UnsupportedTemplate)


@pytest.mark.parametrize("source", ['{{ define "x" }}{{ end }}', '{{ template "x" }}', "{{ 'c' }}", "{{ if .A }}{{ else range .B }}{{ end }}"])
def test_valid_go_outside_the_subset_says_so(source):
    with pytest.raises(UnsupportedTemplate, match="outside the subset"):
        parse(source)


def test_where_counts_lines_and_columns_from_one():
    assert where("ab\ncd", 0) == "line 1, column 1"
    assert where("ab\ncd", 4) == "line 2, column 2"
