"""The docs say what the code does: tests that read both, so that a doc cannot drift unnoticed.

Pure and fast: they parse the code (``ast``) and the Markdown, and need no running service.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from booking_site import env
from common import temporal_connection

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# --- Environment variables: the code and docs/CONFIGURATION.md ------------------------------
#
# Which code counts: every Python file of the project's packages and manage.py; not tests/
# (the test suite's own knobs are not configuration). In those files a *read* of a variable is:
#   - a typed reader of booking_site/env.py: ``env.integer("NAME", default, minimum=…)``, or the
#     reader imported by name (``integer("NAME", …)``);
#   - ``os.environ.get("NAME"[, default])``, ``os.environ["NAME"]``, ``os.getenv("NAME"[, default])``;
#   - in the launcher (devstack/), ``env.get("NAME"[, default])`` and ``env["NAME"]`` on the
#     environment dict it hands to the processes it starts;
#   - anywhere, ``env.get("NAME")`` or ``environ.get("NAME")`` on an environment mapping handed in
#     (common/temporal_connection.py, common/payload_codec.py);
#   - the variables the Temporal SDK's environment configuration reads by itself, which
#     ``common.temporal_connection.SDK_VARIABLES`` names.
# Only names written as literals count (``os.environ.setdefault`` and stores are writes, not reads).
#
# What CONFIGURATION.md lists: the names in backticks in the first column of its tables
# (``| `A` / `B` | `1s` / `8s` | … |`` lists A and B, with defaults 1s and 8s). Each listed name
# must be read by the code, and each name read must be listed, with its literal default (when the
# code gives one) in the default column, and with the bounds the reader enforces in the row.

CODE_PACKAGES = (
    "booking_site",
    "common",
    "flights",
    "orders",
    "payments",
    "temporal_worker",
    "devstack",
    "tools",
)
CONFIGURATION = DOCS / "CONFIGURATION.md"
# The typed readers: the functions of booking_site/env.py whose first parameter is the name.
READERS = {
    name
    for name, function in vars(env).items()
    if inspect.isfunction(function)
    and function.__module__ == env.__name__
    and list(inspect.signature(function).parameters)[:1] == ["name"]
}
VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*")
# Literal defaults that are not the variable's default, with the reason.
NOT_A_DEFAULT = {
    ("devstack/modes.py", "TEMPORAL_UI_URL"): "the text of make run's banner when Temporal is your own",
}


@dataclass(frozen=True)
class Read:
    name: str
    where: str  # path:line
    reader: str  # "integer", "duration", … or "raw" for os.environ and the launcher's env
    default: object = None  # the literal default, or None when there is none or it is computed
    minimum: object = None
    maximum: object = None

    @property
    def path(self) -> str:
        return self.where.rsplit(":", 1)[0]


def code_files() -> list[Path]:
    files = [ROOT / "manage.py"]
    for package in CODE_PACKAGES:
        files += sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)
    return files


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _literal(node: ast.AST | None) -> object:
    """The value of a literal (a string, a number, True/False), a timedelta(...) of literals as
    a timedelta, else None (a computed default: the docs describe it in words)."""
    if node is None:
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "timedelta":
        try:
            return timedelta(**{k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg})
        except ValueError:
            return None
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return value if isinstance(value, str | int | float | bool) else None


def reads_in(path: Path) -> list[Read]:
    """Every read of an environment variable in one file (the rule is at the top of this module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    relative = str(path.relative_to(ROOT))
    launcher = relative.startswith("devstack/")
    imported_readers = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "booking_site.env"
        for alias in node.names
        if alias.name in READERS
    }
    found = []

    def name_of(node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.fullmatch(node.value):
            return node.value
        return None

    for node in ast.walk(tree):
        where = f"{relative}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            env_dict = launcher and isinstance(node.value, ast.Name) and node.value.id == "env"
            if (_is_os_environ(node.value) or env_dict) and (name := name_of(node.slice)):
                found.append(Read(name, where, "raw"))
            continue
        if not isinstance(node, ast.Call) or not node.args:
            continue
        function = node.func
        keywords = {k.arg: k.value for k in node.keywords}
        reader = None
        if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name | ast.Attribute):
            receiver = ast.unparse(function.value)
            if (function.attr, receiver) in {("get", "os.environ"), ("getenv", "os"), ("get", "environ")} or (
                (function.attr, receiver) == ("get", "env")
            ):
                reader = "raw"
            elif function.attr in READERS and receiver == "env":
                reader = function.attr
        elif isinstance(function, ast.Name) and function.id in imported_readers:
            reader = function.id
        if reader is None or not (name := name_of(node.args[0])):
            continue
        default_node = node.args[1] if len(node.args) > 1 else keywords.get("default")
        found.append(
            Read(
                name,
                where,
                reader,
                default=_literal(default_node),
                minimum=_literal(keywords.get("minimum")),
                maximum=_literal(keywords.get("maximum")),
            )
        )
    return found


def code_reads() -> dict[str, list[Read]]:
    reads: dict[str, list[Read]] = {}
    for path in code_files():
        for read in reads_in(path):
            reads.setdefault(read.name, []).append(read)
    for name in temporal_connection.SDK_VARIABLES:  # read by temporalio.envconfig itself
        reads.setdefault(name, []).append(Read(name, "common/temporal_connection.py (the SDK)", "raw"))
    return reads


@dataclass(frozen=True)
class Row:
    names: tuple[str, ...]
    defaults: tuple[str, ...]  # one per name when the default column splits on " / ", else the cell
    text: str  # the whole row
    line: int


def configuration_rows() -> dict[str, Row]:
    """CONFIGURATION.md's table rows, by each variable their first column names."""
    rows: dict[str, Row] = {}
    for number, line in enumerate(CONFIGURATION.read_text().splitlines(), start=1):
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        names = re.findall(r"`([^`]+)`", cells[0])
        if not names or not all(VARIABLE.fullmatch(name) for name in names) or len(cells) < 2:
            continue
        defaults = [part.strip() for part in cells[1].split(" / ")]
        row = Row(
            tuple(names),
            tuple(defaults if len(defaults) == len(names) else [cells[1]] * len(names)),
            line,
            number,
        )
        for name in names:
            rows[name] = row
    return rows


def _plain(text: str) -> str:
    return text.replace("`", "").replace("\u2013", " to ").strip()


def _default_texts(value: object) -> set[str]:
    """How the docs may write a literal default."""
    if isinstance(value, bool):
        return {str(value).lower()}
    if value == "":
        return {"empty", "none", "unset"}
    return {str(value)}


def _duration_texts(value: timedelta) -> set[str]:
    seconds = value.total_seconds()
    texts = {f"{seconds:g}s", f"{seconds:g} s"}
    if seconds < 1 or seconds * 1000 == int(seconds * 1000):
        texts |= {f"{seconds * 1000:g}ms", f"{seconds * 1000:g} ms"}
    if seconds and seconds % 60 == 0:
        texts |= {f"{seconds / 60:g}m", f"{seconds / 60:g} min"}
    if seconds and seconds % 3600 == 0:
        texts |= {f"{seconds / 3600:g}h", f"{seconds / 3600:g} h"}
    return texts


def bounds_stated(read: Read, row_text: str) -> str | None:
    """None when the row states the bounds the reader enforces, else the phrase it should hold:
    ``from MIN to MAX`` (or ``MIN to MAX``), ``at least MIN``, ``at most MAX``."""
    text = _plain(row_text).lower()
    if read.reader == "fraction":
        return None if "0 to 1" in text else "from 0 to 1"
    if read.reader == "duration" and isinstance(read.minimum, timedelta) and read.minimum > timedelta(0):
        wanted = _duration_texts(read.minimum)
        return None if any(f"at least {w}" in text for w in wanted) else f"at least {min(wanted, key=len)}"
    if read.reader != "integer":
        return None
    if read.minimum is not None and read.maximum is not None:
        phrase = f"{read.minimum} to {read.maximum}"
        return None if phrase in text else f"from {phrase}"
    if read.minimum is not None:
        phrase = f"at least {read.minimum}"
        return None if phrase in text else phrase
    if read.maximum is not None:
        phrase = f"at most {read.maximum}"
        return None if phrase in text else phrase
    return None


def test_every_variable_the_code_reads_is_in_configuration_md():
    rows = configuration_rows()
    missing = {
        name: ", ".join(read.where for read in reads)
        for name, reads in sorted(code_reads().items())
        if name not in rows
    }

    assert not missing, "read by the code but missing from docs/CONFIGURATION.md's tables:\n" + "\n".join(
        f"  {name} (read at {where})" for name, where in missing.items()
    )


def test_every_variable_configuration_md_lists_is_read_by_the_code():
    reads = code_reads()
    unread = {name: row.line for name, row in configuration_rows().items() if name not in reads}

    assert not unread, "listed in docs/CONFIGURATION.md but read nowhere in the code:\n" + "\n".join(
        f"  {name} (CONFIGURATION.md line {line})" for name, line in sorted(unread.items())
    )


def test_configuration_md_gives_each_variable_its_default_and_bounds():
    rows = configuration_rows()
    wrong = []
    for name, reads in sorted(code_reads().items()):
        if name not in rows:
            continue  # the test above names it
        row = rows[name]
        documented = _plain(row.defaults[row.names.index(name)])
        if not documented:
            wrong.append(f"  {name}: no default (CONFIGURATION.md line {row.line})")
        for read in reads:
            if read.default is not None and (read.path, name) not in NOT_A_DEFAULT:
                texts = _default_texts(read.default)
                if not any(re.search(rf"(?<![\w.]){re.escape(text)}(?![\w.])", documented) for text in texts):
                    wrong.append(
                        f"  {name}: the code's default is {read.default!r} ({read.where}), "
                        f"CONFIGURATION.md line {row.line} says {documented!r}"
                    )
            if phrase := bounds_stated(read, row.text):
                wrong.append(
                    f"  {name}: {read.where} enforces bounds that CONFIGURATION.md line {row.line} does not "
                    f"state (write {phrase!r})"
                )

    assert not wrong, "docs/CONFIGURATION.md disagrees with the code:\n" + "\n".join(wrong)


def test_settings_read_outside_settings_py_go_through_the_typed_readers():
    """A bare ``int(os.environ.get(...))`` answers a bad value with a traceback; the typed
    readers of booking_site/env.py answer it with one line naming the variable."""
    raw_read = re.compile(r"\bos\.environ\b|\bos\.getenv\(|\benv\.get\(|\benv\[")
    bare = [
        f"  {path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        for path in code_files()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"int", "float", "bool"}
        and any(raw_read.search(ast.unparse(argument)) for argument in node.args)
    ]

    assert not bare, "read with a bare int()/float(): use booking_site.env's readers instead\n" + "\n".join(
        bare
    )


# --- Error codes: the code, booking_site/openapi.yaml and docs/API.md's error table -----------

WEB_PACKAGES = ("booking_site", "common", "flights", "orders", "payments")  # what answers HTTP
# Answers no operation of the OpenAPI document declares, each named in its description instead:
# a method no operation takes, a request Django refuses before routing, a fault of ours.
OUTSIDE_OPERATIONS = {"METHOD_NOT_ALLOWED", "BAD_REQUEST", "INTERNAL_ERROR"}


def answered_codes() -> set[tuple[int, str]]:
    """The (status, code) pairs the web answers with, collected by this rule:

    - every code of ``common.errors.ErrorCode`` with its status (``common.api.STATUS_OF``), and
      each ``error(ErrorCode.NAME, …, status=N)`` that answers a code at another status;
    - in the web's packages (booking_site, common, flights, orders, payments: the worker's
      internal failure types that never reach HTTP are left out), each call
      ``ApiError(status, "CODE", …)``, ``error(status, "CODE", …)`` and
      ``JsonResponse({"error": "CODE", …}, status=status)`` with literal arguments;
    - in the same packages, each ``Refused("CODE", …)`` / ``InvalidInput("CODE", …)`` with a
      literal code and each ``ErrorType.NAME`` referenced (a refusal the web passes on), at the
      status ``common.api.refused`` gives it: ``STATUS_OF``'s, else 400.
    """
    from common.api import STATUS_OF
    from common.errors import ErrorCode
    from orders.workflow_contract import ErrorType

    pairs = {(status, code) for code, status in STATUS_OF.items()}
    for package in WEB_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "ErrorType":
                    code = getattr(ErrorType, node.attr)
                    pairs.add((STATUS_OF.get(code, 400), code))
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                called = ast.unparse(node.func).rsplit(".", 1)[-1]
                first, second = _literal(node.args[0]), _literal(node.args[1]) if len(node.args) > 1 else None
                status = _literal(next((k.value for k in node.keywords if k.arg == "status"), None))
                named = ast.unparse(node.args[0])
                if called == "error" and named.startswith("ErrorCode.") and isinstance(status, int):
                    pairs.add((status, getattr(ErrorCode, named.split(".", 1)[1]).value))
                if called in {"ApiError", "error"} and isinstance(first, int) and isinstance(second, str):
                    pairs.add((first, second))
                elif (
                    called in {"Refused", "InvalidInput"}
                    and isinstance(first, str)
                    and VARIABLE.fullmatch(first)
                ):
                    pairs.add((STATUS_OF.get(first, 400), first))
                elif called == "JsonResponse" and isinstance(node.args[0], ast.Dict):
                    body = {
                        _literal(k): _literal(v)
                        for k, v in zip(node.args[0].keys, node.args[0].values, strict=True)
                    }
                    status = _literal(next((k.value for k in node.keywords if k.arg == "status"), None))
                    if isinstance(body.get("error"), str) and isinstance(status, int):
                        pairs.add((status, body["error"]))
    return pairs


def openapi_codes() -> tuple[set[tuple[int, str]], str]:
    """The (status, code) pairs of every ``error`` enum in the responses of the OpenAPI
    document's operations (following ``$ref``), and the document's description."""
    from ruamel.yaml import YAML

    document = YAML(typ="safe").load((ROOT / "booking_site" / "openapi.yaml").read_text())

    def enums(node: object) -> set[str]:
        if isinstance(node, dict) and "$ref" in node:
            target = document
            for part in node["$ref"].split("/")[1:]:
                target = target[part]
            return enums(target)
        if isinstance(node, dict):
            found = set(node["error"].get("enum", [])) if isinstance(node.get("error"), dict) else set()
            return found.union(*(enums(value) for key, value in node.items() if key != "error"))
        if isinstance(node, list):
            return set().union(*(enums(item) for item in node))
        return set()

    pairs = set()
    for operations in document["paths"].values():
        for operation in operations.values():
            for status, response in (
                (operation.get("responses") or {}).items() if isinstance(operation, dict) else ()
            ):
                pairs |= {(int(status), code) for code in enums(response)}
    return pairs, document["info"]["description"]


def api_md_codes() -> set[tuple[int, str]]:
    """The (status, code) pairs of docs/API.md's error table: the rows whose first column is a
    status (``| 404 | `FLIGHT_NOT_FOUND` / `ORDER_NOT_FOUND` | … |``)."""
    pairs = set()
    for line in (DOCS / "API.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) > 1 and re.fullmatch(r"\d{3}", cells[0]):
            pairs |= {(int(cells[0]), code) for code in re.findall(r"`([A-Z_]+)`", cells[1])}
    return pairs


def test_api_md_lists_every_error_the_api_answers_and_no_other():
    answered, documented = answered_codes(), api_md_codes()

    assert not answered - documented and not documented - answered, (
        "docs/API.md's error table and the code disagree:\n"
        + "".join(
            f"  missing from API.md: {status} {code}\n" for status, code in sorted(answered - documented)
        )
        + "".join(
            f"  in API.md, answered nowhere: {status} {code}\n"
            for status, code in sorted(documented - answered)
        )
    )


def test_the_openapi_document_declares_every_error_the_api_answers_and_no_other():
    answered = answered_codes()
    declared, description = openapi_codes()
    undeclared = {(status, code) for status, code in answered - declared if code not in OUTSIDE_OPERATIONS}
    unnamed = {code for code in OUTSIDE_OPERATIONS if not re.search(rf"\b{code}\b", description)}

    assert not undeclared and not declared - answered and not unnamed, (
        "booking_site/openapi.yaml and the code disagree:\n"
        + "".join(
            f"  answered but in no error enum: {status} {code}\n" for status, code in sorted(undeclared)
        )
        + "".join(
            f"  in an error enum, answered nowhere: {status} {code}\n"
            for status, code in sorted(declared - answered)
        )
        + "".join(f"  not named in info.description: {code}\n" for code in sorted(unnamed))
    )


# --- Commands and paths the docs name ----------------------------------------------------------

DOC_FILES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
CODE_SPAN = re.compile(r"`((?:[^`\n]|\n(?![ \t]*\n))+)`")  # may wrap a line, not a paragraph
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?![:=])", text, re.MULTILINE))


def code_in(doc: Path) -> list[str]:
    """The doc's code: its fenced blocks and its `code spans` (prose's "make sure" is not a command)."""
    text = doc.read_text()
    blocks = FENCE.findall(text)
    return blocks + [" ".join(span.split()) for span in CODE_SPAN.findall(FENCE.sub("", text))]


def test_every_make_target_a_doc_names_exists():
    targets = makefile_targets()
    unknown = sorted(
        {
            f"  {doc.relative_to(ROOT)}: make {target}"
            for doc in DOC_FILES
            for code in code_in(doc)
            for target in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", code)
            if target not in targets
        }
    )

    assert not unknown, "the docs name make targets the Makefile does not have:\n" + "\n".join(unknown)


def test_no_doc_hands_an_option_to_make_itself():
    """``make bench --status-seconds 5`` is make's own option (refused); the target's need ARGS=."""
    wrong = sorted(
        {
            f"  {doc.relative_to(ROOT)}: {command}"
            for doc in DOC_FILES
            for code in code_in(doc)
            for command in re.findall(r"(?<![\w-])make [a-z][\w-]* -[^`\n]*", code)
        }
    )

    assert not wrong, 'options for a make target go in ARGS="...":\n' + "\n".join(wrong)


def named_paths(doc: Path) -> list[str]:
    """The repository paths a doc names: Markdown links to a file (not a URL, not an anchor),
    resolved from the doc's folder; and `code spans` whose first part is an entry of the
    repository's top folder (`booking_site/env.py`, `Makefile`, `.ci/run`; not one that .gitignore
    names, such as `.data/`), resolved from the root, without a ``:line``, ``::test`` or
    ``#anchor`` tail. A span with a space or a wildcard is a command or a pattern, not a path."""
    text = doc.read_text()
    # The repository's own top entries: not what .gitignore names (.data/, .venv/: made by a run).
    ignored = {line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()}
    top = {entry.name for entry in ROOT.iterdir()} - ignored - {".git"}
    found = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:|#", target):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        found.append(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    for span in CODE_SPAN.findall(FENCE.sub("", text)):
        span = re.split(r"::|#|:(?=\d)", span, maxsplit=1)[0]
        if re.search(r"[\s*?<>{}$]", span) or span.split("/", 1)[0] not in top:
            continue
        found.append(span)
    return found


def test_every_repository_path_a_doc_names_exists():
    missing = sorted(
        {
            f"  {doc.relative_to(ROOT)}: {path}"
            for doc in DOC_FILES
            for path in named_paths(doc)
            if not (ROOT / path).exists()
        }
    )

    assert not missing, "the docs name files that are not in the repository:\n" + "\n".join(missing)


def _anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives a doc's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", doc.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_every_anchor_a_doc_links_to_exists():
    broken = []
    for doc in DOC_FILES:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target) or "#" not in target:
                continue
            path, anchor = target.split("#", 1)
            linked = (doc.parent / path).resolve() if path else doc
            if linked.suffix == ".md" and linked.exists() and anchor not in _anchors(linked):
                broken.append(f"  {doc.relative_to(ROOT)}: {target}")

    assert not broken, "links to headings that do not exist:\n" + "\n".join(sorted(set(broken)))
