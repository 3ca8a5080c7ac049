"""The docs cannot drift from the code: every ``--help`` renders and ends with an example, every
documented command parses against the CLI, and every shell example that needs no external data
runs.

The convention for README.md and docs/*.md: fenced ```bash blocks are shell examples. Each one is
run (``bash -euo pipefail``, in an empty temporary folder with ``recipes/`` linked in) unless the
line before its fence (blank lines aside) is a marker saying why not::

    <!-- not run: needs the SIDD dataset -->

so every skipped example is a deliberate choice. Skipped or not, every ``lpie-data`` /
``lpie-model`` command in a block is parsed by the real CLI (options, choices, numbers), so a
renamed option or a removed choice fails here; only paths that do not exist on this machine are
allowed. Usage synopses (``[--out DIR]``) go in ```text blocks, which are not shell.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lpie_data.cli import app as data_app
from lpie_model.cli import app as model_app

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
APPS = {"lpie-data": data_app, "lpie-model": model_app}
MARKER = re.compile(r"^<!--\s*not run:\s*(\S.*?)\s*-->$")
runner = CliRunner()


# --------------------------------------------------------------------------- help


def _commands(group, path: str):
    yield path, group
    for name, cmd in sorted(getattr(group, "commands", {}).items()):
        yield from _commands(cmd, f"{path} {name}")


HELP_CASES = [
    (prog, path) for prog, app in APPS.items()
    for path, _ in _commands(typer.main.get_command(app), prog)
]


@pytest.mark.parametrize(("prog", "path"), HELP_CASES, ids=[p for _, p in HELP_CASES])
def test_help_renders_ends_with_an_example_and_shows_no_type_for_flags(prog: str, path: str):
    group = typer.main.get_command(APPS[prog])
    cmd = group
    for name in path.split()[1:]:
        cmd = cmd.commands[name]
    result = runner.invoke(APPS[prog], [*path.split()[1:], "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "<list[" not in result.output, result.output
    if not hasattr(cmd, "commands"):  # a leaf command: style rule 2
        lines = [ln.strip() for ln in (cmd.help or "").strip().splitlines() if ln.strip()]
        assert len(lines) >= 2, f"{path}: no help text"
        assert lines[-1].startswith(f"Example: {path} "), f"{path}: help must end with an example"
        assert lines[-1] in " ".join(result.output.split())
        check_parses(shlex.split(lines[-1].removeprefix("Example: ")), f"{path} --help")


def test_every_command_is_reached():
    paths = {p for _, p in HELP_CASES}
    assert {"lpie-data prepare sidd", "lpie-data prepare udc", "lpie-data prepare gopro",
            "lpie-data synth", "lpie-data psf simulate", "lpie-data psf show",
            "lpie-data calibrate noise", "lpie-data calibrate psf", "lpie-data extract",
            "lpie-model train", "lpie-model export", "lpie-model benchmark",
            "lpie-model evaluate", "lpie-model enhance"} <= paths


def test_help_shows_values_only_where_an_option_takes_one():
    out = " ".join(runner.invoke(data_app, ["synth", "--help"], terminal_width=200).output.split())
    assert "--overwrite Replace" in out  # a flag: no value
    assert "--psf <path> PSF file" in out  # repeatable: one path per --psf
    out = " ".join(runner.invoke(model_app, ["enhance", "--help"],
                                 terminal_width=200).output.split())
    assert "images... <path>... Photos" in out and "--compare Also write" in out


# --------------------------------------------------------------------------- shell examples


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    text: str
    skip: str | None  # the marker's reason

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def bash_blocks(page: Path) -> list[Block]:
    blocks, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start, body = i, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            before = [ln.strip() for ln in lines[:start] if ln.strip()]
            marker = MARKER.match(before[-1]) if before else None
            blocks.append(Block(page, start + 1, "\n".join(body) + "\n",
                                marker.group(1) if marker else None))
        i += 1
    return blocks


BLOCKS = [b for page in PAGES for b in bash_blocks(page)]
RUN = [b for b in BLOCKS if b.skip is None]


def test_every_marker_precedes_a_shell_example():
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, ln in enumerate(lines):
            if ln.strip().startswith("<!-- not run"):
                assert MARKER.match(ln.strip()), f"{page.name}:{i + 1}: marker needs a reason"
                rest = [x.strip() for x in lines[i + 1:] if x.strip()]
                assert rest and rest[0] == "```bash", f"{page.name}:{i + 1}: marker before no block"
    assert RUN and len(RUN) < len(BLOCKS)  # both kinds exist: the parser found the markers


def lpie_commands(text: str) -> list[list[str]]:
    """The lpie-data / lpie-model command lines of a shell block, as argv lists."""
    commands, heredoc = [], None
    for line in text.replace("\\\n", " ").splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if m := re.search(r"<<-?\s*'?(\w+)'?", line):
            heredoc = m.group(1)
        if line.split(maxsplit=1)[:1] and line.split(maxsplit=1)[0] in APPS:
            commands.append(shlex.split(line, comments=True))
    return commands


def check_parses(words: list[str], where: str) -> None:
    """Parse an ``lpie-data ...`` / ``lpie-model ...`` argv with the real CLI, running nothing."""
    cmd, args = typer.main.get_command(APPS[words[0]]), words[1:]
    while hasattr(cmd, "commands") and args and args[0] in cmd.commands:
        cmd, args = cmd.commands[args[0]], args[1:]
    assert not hasattr(cmd, "commands"), f"{where}: {shlex.join(words)}: no such command"
    try:
        cmd.make_context(words[0], list(args))
    except typer.BadParameter as e:
        if "does not exist" not in str(e):  # a dataset this machine lacks is fine
            raise AssertionError(f"{where}: {shlex.join(words)}: {e}") from None
    except Exception as e:  # unknown option, missing value, bad choice
        raise AssertionError(f"{where}: {shlex.join(words)}: {e}") from None


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_documented_commands_parse(block: Block):
    for words in lpie_commands(block.text):
        check_parses(words, block.id)


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_shell_example_runs(block: Block, tmp_path: Path):
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "COLUMNS": "120"}
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=120)  # the examples that run take seconds
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # and whatever the example started
        output, _ = proc.communicate()
        pytest.fail(f"{block.id}: still running after 120 s: too slow to run, mark it\n{output}")
    assert proc.returncode == 0, f"{block.id}:\n{block.text}\n{output[-4000:]}"


# --------------------------------------------------------------------------- links


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = [ln.lstrip("#").strip() for ln in page.read_text().splitlines() if ln.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_point_at_files_and_headings_that_exist(page: Path):
    for url in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", url):  # https:, mailto:
            continue
        path, _, fragment = url.partition("#")
        target = (page.parent / path) if path else page
        assert target.exists(), f"{page.name}: link to {url}: no such file"
        if fragment and target.suffix == ".md":
            assert fragment in _anchors(target), f"{page.name}: link to {url}: no such heading"


def test_readme_is_a_front_page_linking_every_docs_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "## Quick start" in text and "make demo\nmake test\n" in text
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in text, f"README does not link docs/{page.name}"


def test_readme_python_example_names_real_entry_points():
    """The Python example is not run (it needs SIDD), but it compiles and every ``lpie_data.X``
    it calls exists."""
    import lpie_data

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks
    for code in blocks:
        compile(code, "README.md", "exec")
        for name in re.findall(r"\blpie_data\.(\w+)\(", code):
            assert callable(getattr(lpie_data, name, None)), f"lpie_data.{name}"


def test_commands_are_shown_in_bash_blocks_only():
    """A command in a plain, ```sh or ```console fence would escape the checks above; usage
    synopses go in ```text."""
    for page in PAGES:
        fence = None
        for i, line in enumerate(page.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else stripped[3:] or "plain"
            elif fence not in (None, "bash", "text", "python", "toml", "json"):
                assert not stripped.startswith(tuple(APPS)), f"{page.name}:{i}: in a {fence} block"


def test_documented_python_names_exist():
    """Every ``lpie_data.x.y`` / ``lpie_model.x.y`` the pages name can be imported."""
    import importlib

    for page in PAGES:
        for ref in sorted(set(re.findall(r"\blpie_(?:data|model)(?:\.\w+)+", page.read_text()))):
            parts = ref.split(".")
            for i in range(len(parts), 0, -1):  # the longest importable module, then attributes
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                    break
                except ImportError:
                    continue
            for attr in parts[i:]:
                assert hasattr(obj, attr), f"{page.name}: {ref}: no {attr}"
                obj = getattr(obj, attr)
