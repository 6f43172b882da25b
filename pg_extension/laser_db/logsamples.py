"""Real parameter values of a statement, recovered from the tail of the server log.

pg_stat_statements keeps each statement's *normalized* text: every constant is replaced by `$n`,
numbered in text order (a leading minus sign and a string's E/B/X prefix belong to the constant;
a type keyword does not: `date '1995-03-15'` becomes `date $1`; `N'x'` becomes `N$1`). Statements
sent with the extended protocol keep their own `$n` parameters; constants written in such a
statement are numbered after them (`$1::int + 1` becomes `$1::int + $2` with one parameter).

With `log_min_duration_statement` (or `log_statement = 'all'`) the server log, in the stderr
format with English messages and any `log_line_prefix`, holds records such as::

    2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 1.210 ms  statement: select 1 as x
    <TAB>  where 'it''s' <> E'x\\ny'
    <TAB>and -2.5 < 3
    2026-11-22 03:31:20.558 UTC [27013] LOG:  duration: 0.002 ms  execute _pg3_0: select $1::int
    2026-11-22 03:31:20.558 UTC [27013] DETAIL:  parameters: $1 = '99'

Every line break inside a message is followed by a TAB that the server adds (also inside string
literals and parameter values), so a line that does not begin with a TAB begins a new record.
`statement:` records come from the simple protocol; `execute <name>:` records (`<unnamed>` or a
prepared statement's name) from the extended protocol, with the values in the DETAIL record that
follows: `$1 = '42', $2 = NULL`, quoted with '' doubling, or cut to `log_parameter_max_length`
characters followed by `...` (such values are unusable). `parse` and `bind` records also occur;
they are not executions and are ignored, as are records without a statement (plain `duration:`).
A record with a duration was logged after the statement finished; one without it (from
`log_statement`) was logged before it ran, so it is ignored when an ERROR for the same text
follows it closely.

samples() matches each statement and execute record against the normalized text: whitespace runs
match any whitespace, the rest compares case-insensitively, and each `$n` stands for one constant
(a string in any quoting, a number, true/false/null) or, in an execute record, for a parameter
whose value the DETAIL record gives. Values are the text of the constant, unquoted (the caller
puts them back as quoted literals and PostgreSQL infers their type), or None for NULL.

pg_stat_statements keeps the text of the first statement seen for a queryid, and the queryid
ignores column aliases, so later statements that differ from that text in an alias have the same
entry but do not match it here: samples come only from statements written as the stored text.

Bounded work: records longer than MAX_RECORD_CHARS are skipped, the matching reads each record
once from left to right (SQL constants are lexed greedily, so no backtracking is needed), the log
is read from its end and the search stops after `limit` distinct sets. Only the stderr format
(not csvlog/jsonlog/syslog) with English server messages (lc_messages C or en) is understood.

Pure standard library: this module runs inside PostgreSQL backends under plpython3u.
"""
from __future__ import annotations

import re

MAX_RECORD_CHARS = 1 << 20       # records longer than this are skipped, unread
MAX_PLACEHOLDERS = 10_000        # normalized texts with more `$n` than this give no samples
_ERROR_LOOKAHEAD = 50            # records searched for the ERROR of a log_statement record

_WS = " \t\n\r\f\v"              # PostgreSQL's whitespace
_WS_RUN = re.compile(f"[{_WS}]+")
_IDENT = "A-Za-z0-9_$"
# A `$n` placeholder of the normalized text; not the tail of an identifier such as `a$1`, but
# allowed right after the N of a national string (`N'x'` is normalized to `N$1`).
_NORMALIZED_PARAM = re.compile(rf"(?:(?<![{_IDENT}])|(?<=(?<![{_IDENT}])[nN]))\$([0-9]+)")
# The first line of a record: a prefix (log_line_prefix), the severity, two spaces.
_HEADER = re.compile(r"(?<![A-Za-z0-9])(LOG|DETAIL|ERROR|STATEMENT|FATAL|PANIC|WARNING|NOTICE|INFO"
                     r"|HINT|CONTEXT|QUERY|LOCATION|DEBUG[1-5]?):  ")
_STATEMENT = re.compile(r"(?P<duration>duration: [^ \n]+ ms  )?"
                        r"(?:(?P<simple>statement)|execute (?P<name>[^\n]*?)): (?P<text>.*)\Z", re.DOTALL)
_PARAMETERS = re.compile(r"parameters: ", re.IGNORECASE)
_PARAMETER = re.compile(r"\$([0-9]+) = (?:'((?:[^']|'')*)'|(NULL))(?:, |\Z)")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_QUOTE = re.compile("'")
_QUOTE_OR_BACKSLASH = re.compile(r"[\\']")
_SPECIAL = re.compile(r"['\";$/-]")
_E_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))|''",
                       re.DOTALL)
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

_TRUNCATED = object()            # a parameter value cut by log_parameter_max_length
_INVALID = object()              # a constant whose value cannot be decoded


_CONSTANT = re.compile(
    # Atomic, like the SQL lexer: a constant is the longest token there, never a part of it.
    "(?>" + "|".join((
        r"'(?:[^']|'')*'",                                            # 'standard'
        r"[eE]'(?:[^'\\]|\\[\s\S]|'')*'",                             # E'escape'
        r"[bBxX]'[^']*'",                                             # B'0101', X'1f'
        r"\$(?P<tag>(?:[A-Za-z_][A-Za-z0-9_]*)?)\$[\s\S]*?\$(?P=tag)\$",  # $tag$...$tag$
        r"\$[0-9]+",                                                  # a parameter (execute)
        rf"(?:-[{_WS}]*)?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?",  # -1.5e3
        rf"(?:[tT][rR][uU][eE]|[fF][aA][lL][sS][eE]|[nN][uU][lL][lL])(?![{_IDENT}])",
    )) + ")")

_SPACE, _TEXT, _PLACEHOLDER = 0, 1, 2


def _compile(normalized: str) -> tuple[list[tuple[int, str]], list[int]] | None:
    """The normalized text as matching steps, and the `$n` number of each placeholder step.

    Steps are a whitespace run, a piece of text (lower case) or a placeholder; no regex is built.

    >>> _compile("select $1 +  $2")
    ([(1, 'select'), (0, ''), (2, ''), (0, ''), (1, '+'), (0, ''), (2, '')], [1, 2])
    """
    text = normalized.strip(_WS)
    steps: list[tuple[int, str]] = []
    numbers: list[int] = []

    def add_text(piece: str) -> None:
        for k, chunk in enumerate(_WS_RUN.split(piece)):
            if k:
                steps.append((_SPACE, ""))
            if chunk:
                steps.append((_TEXT, chunk.lower()))

    position = 0
    for match in _NORMALIZED_PARAM.finditer(text):
        if len(numbers) >= MAX_PLACEHOLDERS:
            return None
        add_text(text[position:match.start()])
        steps.append((_PLACEHOLDER, ""))
        numbers.append(int(match.group(1)))
        position = match.end()
    add_text(text[position:])
    return steps, numbers


def _match(steps: list[tuple[int, str]], text: str) -> list[str] | None:
    """The constants standing for the placeholders when `text` matches the steps, else None.

    Linear: whitespace runs, text pieces and constants are each read once, left to right.

    >>> _match(_compile("select $1 +  $2")[0], "SELECT -5 +\\n 'x''y'")
    ['-5', "'x''y'"]
    >>> _match(_compile("select $1 + $2")[0], "select -5 + x") is None
    True
    """
    position = 0
    constants: list[str] = []
    for kind, piece in steps:
        if kind == _SPACE:
            match = _WS_RUN.match(text, position)
            if match is None:
                return None
            position = match.end()
        elif kind == _TEXT:
            end = position + len(piece)
            if text[position:end].lower() != piece:
                return None
            position = end
        else:
            match = _CONSTANT.match(text, position)
            if match is None:
                return None
            constants.append(match.group())
            position = match.end()
    return constants if position == len(text) else None


def _unescape(body: str) -> str | object:
    """The value of an E'...' string's body; _INVALID when PostgreSQL would reject it.

    >>> _unescape(r"tab\\t \\'q\\' it''s \\x41\\101\\u00e9 \\303\\251") == "tab\\t 'q' it's AA\\xe9 \\xe9"
    True
    >>> _unescape(r"\\000") is _INVALID
    True
    """
    out = bytearray()
    position = 0
    for match in _E_ESCAPE.finditer(body):
        out += body[position:match.start()].encode("utf-8", "surrogatepass")
        octal, hexa, short, long_, other = match.groups()
        if match.group() == "''":
            out += b"'"
        elif octal is not None or hexa is not None:
            out.append(int(octal, 8) & 0xFF if octal is not None else int(hexa, 16))
        elif short is not None or long_ is not None:
            code = int(short or long_, 16)
            if code > 0x10FFFF:
                return _INVALID
            out += chr(code).encode("utf-8", "surrogatepass")
        else:
            out += _SIMPLE_ESCAPES.get(other, other).encode("utf-8", "surrogatepass")
        position = match.end()
    out += body[position:].encode("utf-8", "surrogatepass")
    try:
        value = out.decode("utf-8", "surrogatepass")
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")  # join \uD83D\uDE00
    except UnicodeError:
        return _INVALID
    return _INVALID if "\0" in value else value


def _literal_value(token: str) -> str | None | object:
    """The value of one constant as matched in a logged statement.

    Returns the text, None for NULL, _INVALID when undecodable, or ("param", n) for `$n`.

    >>> [_literal_value(t) for t in ("'it''s'", "-5", "- 5", "1.5e3", "TRUE", "null", "$$a'b$$")]
    ["it's", '-5', '-5', '1.5e3', 'TRUE', None, "a'b"]
    >>> _literal_value("$t$x$$y$t$"), _literal_value("B'0101'"), _literal_value("X'1f'")
    ('x$$y', 'b0101', 'x1f')
    >>> _literal_value("E'a\\\\nb'"), _literal_value("$2")
    ('a\\nb', ('param', 2))
    """
    first = token[0]
    if first == "'":
        return token[1:-1].replace("''", "'")
    if first in "eE" and token[1:2] == "'":
        return _unescape(token[2:-1])
    if first in "bBxX" and token[1:2] == "'":
        return first.lower() + token[2:-1]             # bit_in reads 'b0101' and 'x1f'
    if first == "$":
        if token[1:2].isdigit():
            return ("param", int(token[1:]))
        tag = token[:token.index("$", 1) + 1]
        return token[len(tag):-len(tag)]
    lowered = token.lower()
    if lowered == "null":
        return None
    if lowered in ("true", "false"):
        return token
    return "".join(token.split())                      # `- 5` is the constant -5


def _end_of_string(text: str, position: int, escapes: bool) -> int:
    """Index just past the quote closing the string whose body starts at `position`."""
    closing = _QUOTE_OR_BACKSLASH if escapes else _QUOTE
    while True:
        match = closing.search(text, position)
        if match is None:
            return len(text)
        if match.group() == "\\" or text.startswith("''", match.start()):
            position = match.end() + 1
        else:
            return match.end()


def _split_statements(text: str) -> list[str]:
    """The statements of a multi-statement string, split at `;` outside quotes and comments.

    >>> _split_statements("select ';' as a; /* ; */ select $$;$$, E'\\\\';' -- ;\\n; ")
    ["select ';' as a", " /* ; */ select $$;$$, E'\\\\';' -- ;\\n", ' ']
    """
    out: list[str] = []
    start = position = 0
    length = len(text)
    while position < length:
        match = _SPECIAL.search(text, position)
        if match is None:
            break
        i = match.start()
        char = match.group()
        if char == "'":
            escapes = i > 0 and text[i - 1] in "eE" and (i < 2 or not (text[i - 2].isalnum()
                                                                       or text[i - 2] in "_$"))
            position = _end_of_string(text, i + 1, escapes)
        elif char == '"':
            end = text.find('"', i + 1)
            position = length if end < 0 else end + 1
        elif char == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            position = length if end < 0 else end + 1
        elif char == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            position = length if end < 0 else end + 2
        elif char == "$" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_$")):
            tag = _DOLLAR_TAG.match(text, i)
            if tag is None:
                position = i + 1
            else:
                end = text.find(tag.group(), tag.end())
                position = length if end < 0 else end + len(tag.group())
        elif char == ";":
            out.append(text[start:i])
            start = position = i + 1
        else:
            position = i + 1
    out.append(text[start:])
    return out


def split_records(log_text: str) -> list[str]:
    """The log's records, continuation lines joined back without the server's added TAB.

    Lines before the first line that starts a record (the cut tail of an earlier one) are dropped.

    >>> split_records("\\tcut off\\n2026-11-22 UTC [1] LOG:  statement: select 1\\n\\t, 2\\nP LOG:  x")
    ['2026-11-22 UTC [1] LOG:  statement: select 1\\n, 2', 'P LOG:  x']
    """
    records: list[str] = []
    current: list[str] | None = None
    for line in log_text.split("\n"):
        if line.startswith("\t"):
            if current is not None:
                current.append(line[1:])
            continue
        if current is not None:
            records.append("\n".join(current))
        current = [line]
    if current is not None and current != [""]:
        records.append("\n".join(current))
    return records


def _parse_record(record: str) -> tuple[str, str] | None:
    """(severity, message) of one record, or None when it has no recognizable header.

    >>> _parse_record("2026-11-22 03:31:20.558 UTC [27013] DETAIL:  parameters: $1 = '99'")
    ('DETAIL', "parameters: $1 = '99'")
    """
    first_line_end = record.find("\n")
    header = _HEADER.search(record, 0, len(record) if first_line_end < 0 else first_line_end)
    if header is None:
        return None
    return header.group(1), record[header.end():]


def _parse_parameters(message: str) -> dict[int, str | None | object] | None:
    """The values of a DETAIL `parameters:` message; truncated ones are _TRUNCATED.

    >>> _parse_parameters("parameters: $1 = '42', $2 = NULL, $3 = 'it''s'")
    {1: '42', 2: None, 3: "it's"}
    >>> _parse_parameters("parameters: $1 = 'abcde...'")[1] is _TRUNCATED
    True
    >>> _parse_parameters("parameters: $1 = 'unterminated") is None
    True
    """
    start = _PARAMETERS.match(message)
    if start is None:
        return None
    values: dict[int, str | None | object] = {}
    position = start.end()
    while position < len(message):
        match = _PARAMETER.match(message, position)
        if match is None:
            return None
        number, quoted, null = match.groups()
        if null is not None:
            values[int(number)] = None
        elif quoted.endswith("..."):
            values[int(number)] = _TRUNCATED
        else:
            values[int(number)] = quoted.replace("''", "'")
        position = match.end()
    return values


def _bind(constants: list[str], numbers: list[int],
          parameters: dict[int, str | None | object] | None) -> dict[int, str | None] | None:
    """The parameter set of one match, or None when a value is unknown, invalid or inconsistent."""
    values: dict[int, str | None] = {}
    for constant, number in zip(constants, numbers, strict=False):
        value = _literal_value(constant)
        if isinstance(value, tuple):
            if parameters is None or value[1] not in parameters:
                return None
            value = parameters[value[1]]
        if value is _INVALID or value is _TRUNCATED:
            return None
        if number in values and values[number] != value:
            return None
        values[number] = value  # type: ignore[assignment]
    return values


def _failed(entries: list[tuple[str, str] | None], index: int, text: str) -> bool:
    """Whether an ERROR with this statement text follows the record at `index` closely."""
    for k in range(index + 1, min(len(entries) - 1, index + 1 + _ERROR_LOOKAHEAD)):
        entry, following = entries[k], entries[k + 1]
        if (entry is not None and entry[0] in ("ERROR", "FATAL", "PANIC")
                and following is not None and following[0] == "STATEMENT" and following[1] == text):
            return True
    return False


def samples(normalized: str, log_text: str, limit: int = 5) -> list[dict[int, str | None]]:
    """Distinct parameter sets of logged executions of `normalized`, most recent first.

    Each set maps the number of every `$n` in `normalized` to its value (None for NULL). A
    normalized text without `$n` gives [{}] once it was executed. Never raises on odd input.

    >>> log = ("2026-11-22 03:31:20.555 UTC [27013] LOG:  duration: 0.259 ms  statement: "
    ...        "select date '1995-03-15', -5 as x, 'a''b' z, true, null limit 3\\n"
    ...        "2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 0.003 ms  execute <unnamed>: "
    ...        "select date $1, $2 as x, $3 z, $4, $5 limit $6\\n"
    ...        "2026-11-22 03:31:20.557 UTC [27013] DETAIL:  parameters: $1 = '2000-01-01', "
    ...        "$2 = '7', $3 = 'it''s', $4 = 'f', $5 = NULL, $6 = '1'\\n")
    >>> for s in samples("select date $1, $2 as x, $3 z, $4, $5 limit $6", log): print(s)
    {1: '2000-01-01', 2: '7', 3: "it's", 4: 'f', 5: None, 6: '1'}
    {1: '1995-03-15', 2: '-5', 3: "a'b", 4: 'true', 5: None, 6: '3'}
    """
    try:
        return _samples(normalized, log_text, limit)
    except Exception:  # noqa: BLE001 -- garbage in the log must not break the caller; no samples then
        return []


def _samples(normalized: str, log_text: str, limit: int) -> list[dict[int, str | None]]:
    if limit <= 0 or not isinstance(normalized, str) or not isinstance(log_text, str):
        return []
    if not normalized.strip(_WS) or len(normalized) > MAX_RECORD_CHARS:
        return []
    compiled = _compile(normalized)
    if compiled is None:
        return []
    steps, numbers = compiled
    entries = [None if len(record) > MAX_RECORD_CHARS else _parse_record(record)
               for record in split_records(log_text)]
    found: list[dict[int, str | None]] = []
    seen: set[tuple[tuple[int, str | None], ...]] = set()
    for index in range(len(entries) - 1, -1, -1):
        entry = entries[index]
        if entry is None or entry[0] != "LOG":
            continue
        statement = _STATEMENT.match(entry[1])
        if statement is None:
            continue
        text = statement.group("text")
        if statement.group("duration") is None and _failed(entries, index, text):
            continue
        parameters = None
        if statement.group("simple") is None:
            detail = entries[index + 1] if index + 1 < len(entries) else None
            if detail is not None and detail[0] == "DETAIL":
                parameters = _parse_parameters(detail[1])
            candidates = [text]
        else:
            candidates = [text]
            if ";" in text and _match(steps, text.strip(_WS)) is None:
                candidates = _split_statements(text)[::-1]   # the last one ran last
        for candidate in candidates:
            constants = _match(steps, candidate.strip(_WS))
            if constants is None:
                continue
            values = _bind(constants, numbers, parameters)
            if values is None:
                continue
            key = tuple(sorted(values.items(), key=lambda item: item[0]))
            if key in seen:
                continue
            seen.add(key)
            found.append(dict(key))
            if len(found) >= limit:
                return found
    return found
