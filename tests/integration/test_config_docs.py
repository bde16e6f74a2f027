"""The documentation names only options that exist, with their real defaults.

Every `TRYGG_*` variable in docs/*.md and README.md must appear in the
`--help` of the program it belongs to, and where the documentation gives a
default (a table row `| TRYGG_X | default | ...` or prose "`TRYGG_X`,
default D"), --help must show the same default. Issue 9: the docs promised
TRYGG_PUBLIC_RATE_PER_MIN (default 600) while intake had no such option, so
the variable was ignored and the public limit was 0.

Nothing here is specific to one service or one variable: the program is
the one the line names (`trygg-crewdemo ...`), else the one the document is
about (docs/intake.md: trygg-intake), else any; constants of the C code
(TRYGG_E*) and the test suite's own variables are not options.
"""
import glob
import os
import re
import subprocess

from harness import BIN, ROOT, check

VAR = re.compile(r"\bTRYGG_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_*])")
RENAME = re.compile(r"renamed|not read any more|no longer read", re.I)
PROGRAM = re.compile(r"\btrygg-([a-z][a-z0-9-]*)")


def programs():
    return {os.path.basename(p)[len("trygg-"):]: p
            for p in glob.glob(os.path.join(BIN, "trygg-*")) if os.access(p, os.X_OK)}


def help_text(path, cache={}):
    if path not in cache:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
        p = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=20, env=env)
        cache[path] = p.stdout + p.stderr
    return cache[path]


def help_defaults(text):
    """{TRYGG_X: default or None} from a --help text."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"\s+[a-z0-9_]+ \((TRYGG_[A-Z0-9_]+)", line)
        if m:
            current = m.group(1)
            out[current] = None
            continue
        m = re.search(r", default (.*?)(?:, (?:between|at least|at most|reloadable|secret).*)?$", line)
        if current and m and out[current] is None:
            out[current] = m.group(1).strip()
    return out


def not_options():
    """Names the C code defines (TRYGG_EINVAL, TRYGG_MUSTCHECK ...) and the
    variables the test suite itself reads."""
    names = set()
    for path in glob.glob(os.path.join(ROOT, "services/*/*.h")):
        with open(path, errors="replace") as f:
            text = f.read()
        names.update(re.findall(r"#define (TRYGG_\w+)", text))
        names.update(re.findall(r"^\s*(TRYGG_\w+)\s*(?:=|,)", text, re.M))
    for path in glob.glob(os.path.join(ROOT, "tests/*.sh")) + \
            glob.glob(os.path.join(ROOT, "tests/integration/*.py")):
        if os.path.basename(path) == os.path.basename(__file__):
            continue
        with open(path, errors="replace") as f:
            text = f.read()
        names.update(re.findall(r"environ(?:\.get)?[\[(]\"(TRYGG_\w+)\"", text))
        names.update(re.findall(r"\$\{?(TRYGG_\w+)", text))
    return names


def logical_lines(path):
    """Lines with shell continuations (a trailing backslash) joined."""
    with open(path, encoding="utf-8") as f:
        raw = f.read().splitlines()
    out, buf, first = [], "", None
    for n, line in enumerate(raw, 1):
        if first is None:
            first = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        out.append((first, buf + line))
        buf, first = "", None
    if buf:
        out.append((first, buf))
    return out


def clean(value):
    value = re.sub(r"\(.*?\)", "", value).replace("`", "").strip()
    return value


def table_cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []


def default_column(header):
    """The index of a table's default column from its header row, or None."""
    for i, cell in enumerate(header):
        if "default" in cell.lower():
            return i
    return None


def documented_defaults(line, column):
    """[(var, default)] that this line documents, if any. `column` is the
    default column of the table the line is a row of (None: not a table
    with defaults)."""
    out = []
    cells = table_cells(line)
    if column is not None and len(cells) > column and VAR.search(cells[0]):
        names = VAR.findall(cells[0])
        values = [clean(v) for v in cells[column].split(",")]
        if len(values) == len(names):
            out += list(zip(names, values))
        elif len(values) == 1:
            out += [(n, values[0]) for n in names]
    for m in re.finditer(r"`(TRYGG_[A-Z0-9_]+)`,? default ([^\s,;)]+)", line):
        out.append((m.group(1), clean(m.group(2))))
    return out


def same_default(doc, shown):
    if doc.lower() in ("", "unset", "none", "required", "-"):
        return shown is None or shown == ""
    if shown is None:
        return False
    # "`:5571`" abbreviates the previous cell's tcp://127.0.0.1:5571.
    return shown == doc or (doc.startswith(":") and shown.endswith(doc))


def test_config_docs_every_variable_exists_with_its_default():
    progs = programs()
    check("intake" in progs, "no binaries in %s (run make)" % BIN)
    skip = not_options()
    docs = sorted(glob.glob(os.path.join(ROOT, "docs/*.md"))) + [os.path.join(ROOT, "README.md")]
    problems, seen = [], 0
    for doc in docs:
        stem = os.path.splitext(os.path.basename(doc))[0]
        default_prog = stem if stem in progs else None
        column, in_table, rename_note = None, False, False
        for lineno, line in logical_lines(doc):
            if not line.strip():
                rename_note = False
            rename_note = rename_note or bool(RENAME.search(line))
            cells = table_cells(line)
            if cells and not in_table:
                column = default_column(cells)  # the header row
            in_table = bool(cells)
            names = [v for v in VAR.findall(line) if v not in skip]
            if not names:
                continue
            # A paragraph that notes a rename names the old variables on purpose.
            if rename_note:
                names = [v for v in names if v in "".join(help_text(p) for p in progs.values())]
            named = [p for p in PROGRAM.findall(line) if p in progs]
            owners = named[-1:] or ([default_prog] if default_prog else list(progs))
            where = "%s:%d" % (os.path.relpath(doc, ROOT), lineno)
            for v in names:
                seen += 1
                if not any(v in help_text(progs[o]) for o in owners):
                    problems.append("%s: %s is not an option of %s" % (where, v, "/".join(owners)))
            for v, value in documented_defaults(line, column):
                if v in skip:
                    continue
                shown = [help_defaults(help_text(progs[o])).get(v, "missing") for o in owners]
                shown = [s for s in shown if s != "missing"]
                if shown and not any(same_default(value, s) for s in shown):
                    problems.append("%s: %s documented with default %r, --help says %r"
                                    % (where, v, value, shown[0]))
    check(seen >= 10, "found only %d variables in the docs: the scan is broken" % seen)
    check(not problems, "documentation and --help disagree:\n  " + "\n  ".join(problems))


def test_config_docs_checker_catches_a_wrong_default():
    """The checker itself can fail: a made-up row is caught."""
    progs = programs()
    defaults = help_defaults(help_text(progs["intake"]))
    check(defaults.get("TRYGG_HTTP_PORT") == "8080", "help parser: %r" % defaults.get("TRYGG_HTTP_PORT"))
    header = "| variable | default | meaning |"
    row = "| `TRYGG_HTTP_PORT` | `9999` | where it listens |"
    (v, value), = documented_defaults(row, default_column(table_cells(header)))
    check(v == "TRYGG_HTTP_PORT" and not same_default(value, defaults[v]), "wrong default not caught")
    check("TRYGG_NO_SUCH_OPTION" not in help_text(progs["intake"]), "unknown option not caught")
