"""The docs stay true to the code: every variable settings.py reads is in
docs/configuration.md with its default, the README fits on a screen, and every relative
link in the README and docs/ leads somewhere.

Pure: it reads files only (no database, no service), so it runs anywhere:
``.venv/bin/pytest -q -p no:cacheprovider tests/test_docs.py``.
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "leaderboard_project" / "settings.py"
CONFIGURATION = ROOT / "docs" / "configuration.md"
README = ROOT / "README.md"
README_MAX_BYTES = 12_288

# What an environment variable's name looks like: DJANGO_DEBUG, LEADERBOARD_DB_PORT.
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
LEADERBOARD_NAME = re.compile(r"\bLEADERBOARD_[A-Z0-9_]*[A-Z0-9]\b")
# The default cell of a variable read without one (os.environ["NAME"]).
REQUIRED = "(required)"


@dataclass(frozen=True)
class EnvRead:
    name: str
    default: str | None  # the default's source text, as settings.py writes it
    line: int


def _call_name(node: ast.Call) -> str:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return ""


def _argument(node: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(node.args) > position:
        return node.args[position]
    return next((kw.value for kw in node.keywords if kw.arg == keyword), None)


def _is_os_environ(node: ast.expr) -> bool:
    # os.environ, or environ imported from os
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and node.id == "environ"


def _string(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def settings_env_reads() -> tuple[list[EnvRead], list[str]]:
    """Every environment variable settings.py reads, and the reads whose name is no
    string constant (which no page can document)."""
    source = SETTINGS.read_text(encoding="utf-8")
    tree = ast.parse(source)
    reads: list[EnvRead] = []
    unnamed: list[str] = []

    def default_of(node: ast.expr | None) -> str | None:
        return None if node is None else ast.get_source_segment(source, node)

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = _call_name(node)
            first = _argument(node, 0, "name")
            name = _string(first)
            is_helper = called.startswith("env_")
            is_environ = (called in {"get", "setdefault"} and _is_os_environ(getattr(node.func, "value", None))) or (
                called == "getenv"
            )
            if is_helper or is_environ:
                if name is None:
                    # The helpers' own bodies read os.environ.get(name, ...): not a variable.
                    if is_helper:
                        unnamed.append(f"line {node.lineno}: {ast.get_source_segment(source, node)}")
                    continue
                reads.append(EnvRead(name, default_of(_argument(node, 1, "default")), node.lineno))
            elif name is not None and ENV_NAME.match(name):
                # Any other call handed a variable's name (a helper renamed, say) reads it too.
                reads.append(EnvRead(name, default_of(_argument(node, 1, "default")), node.lineno))
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value):
            name = _string(node.slice)
            if name is not None:
                reads.append(EnvRead(name, None, node.lineno))
    return reads, unnamed


def _normalised(text: str) -> str:
    """A default as a table cell or as source: no backticks, no blanks, and 10_000 the
    same as 10000."""
    text = text.strip().strip("`")
    text = re.sub(r"\s+", "", text)
    return re.sub(r"(?<=\d)_(?=\d)", "", text)


def _without_fences(markdown: str) -> str:
    """The markdown with its fenced code blocks blanked (lines kept, for messages)."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else line)
    return "\n".join(lines)


def configuration_rows() -> dict[str, list[str]]:
    """Each table row's variable (first cell) and its default cells."""
    rows: dict[str, list[str]] = {}
    for line in _without_fences(CONFIGURATION.read_text(encoding="utf-8")).splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        name = cells[0].strip("`")
        if ENV_NAME.match(name):
            rows.setdefault(name, []).append(cells[1])
    return rows


def test_settings_reads_every_variable_by_a_name_the_docs_can_give() -> None:
    reads, unnamed = settings_env_reads()
    assert reads, "found no environment reads in settings.py: has the way it reads them changed?"
    assert not unnamed, f"settings.py reads variables whose name is not a string constant: {unnamed}"


def test_the_configuration_page_documents_every_variable_with_its_default() -> None:
    reads, _ = settings_env_reads()
    rows = configuration_rows()
    missing = [f"{read.name} (settings.py line {read.line})" for read in reads if read.name not in rows]
    assert not missing, f"docs/configuration.md has no table row for: {missing}"
    wrong = []
    for read in reads:
        expected = REQUIRED if read.default is None else read.default
        if _normalised(expected) not in {_normalised(cell) for cell in rows[read.name]}:
            wrong.append(f"{read.name}: settings.py line {read.line} says {expected}, the page {rows[read.name]}")
    assert not wrong, f"docs/configuration.md gives another default: {wrong}"


def test_the_configuration_page_names_only_variables_settings_reads() -> None:
    reads, _ = settings_env_reads()
    read = {one.name for one in reads}
    text = CONFIGURATION.read_text(encoding="utf-8")
    unknown = sorted(set(LEADERBOARD_NAME.findall(text)) - read)
    assert not unknown, f"docs/configuration.md names variables settings.py does not read: {unknown}"
    rows_unknown = sorted(set(configuration_rows()) - read)
    assert not rows_unknown, f"docs/configuration.md has rows for variables settings.py does not read: {rows_unknown}"


def test_the_readme_fits_in_12_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes, over {README_MAX_BYTES}: move the detail to docs/"


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _links(markdown: str) -> list[str]:
    text = CODE_SPAN.sub("", _without_fences(markdown))
    return LINK.findall(text) + REFERENCE.findall(text)


def _anchors(markdown: str) -> set[str]:
    """The heading anchors GitHub makes: lower case, punctuation dropped, blanks as
    hyphens, a repeated one numbered."""
    anchors: set[str] = set()
    for heading in HEADING.findall(_without_fences(markdown)):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        candidate, count = slug, 0
        while candidate in anchors:
            count += 1
            candidate = f"{slug}-{count}"
        anchors.add(candidate)
    return anchors


def _markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file() -> None:
    broken = []
    for page in _markdown_files():
        for target in _links(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not linked.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text(encoding="utf-8")):
                broken.append(f"{where} (no heading #{anchor} there)")
    assert not broken, f"broken links: {broken}"


def test_the_link_finder_sees_links_and_skips_code() -> None:
    markdown = "See [the API](docs/api.md#errors) and ![a chart](x.png).\n`[not](a-link)`\n```\n[no](link)\n```\n"
    assert _links(markdown) == ["docs/api.md#errors", "x.png"]
    assert _anchors("# API (v1, JSON)\n## Overload: shed at the door\n## Overload: shed at the door\n") == {
        "api-v1-json",
        "overload-shed-at-the-door",
        "overload-shed-at-the-door-1",
    }
