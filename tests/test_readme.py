"""Every example in README.md runs as written.

The README's fenced code blocks are read in order and replayed in one scratch directory (holding
links to the repository's ``data/`` and ``examples/``), as a reader who copies them would:

* ``python`` blocks run as scripts, each in a fresh interpreter;
* shell blocks (no language, ``bash``, ``sh``): every ``lipopt …`` line runs as
  ``python -m lipopt.cli …`` with the same arguments; a trailing comment that says
  ``exit code N`` expects that exit code, else 0. Any other line (``make demo`` …) must be in
  :data:`NOT_RUN` with the reason it cannot run here, so nothing is skipped silently;
* ``toml`` blocks whose first line is ``# file: NAME`` are written to ``NAME`` when reached;
* a ``text`` block right after a shell block is that block's last command's output: its table
  rows (method and upper bound) and its ``best certified`` line must be what the command prints.

The README's methods table (between the ``methods-table`` markers) must equal
:func:`methods_table`, rendered from the method registry, so it cannot drift from the code.
Regenerate it with ``python tests/test_readme.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL_LANGS = ("", "bash", "sh", "shell")

#: shell lines of the README that this test does not run, with the reason
NOT_RUN = {
    "make demo": "creates .venv and installs lipopt (the test suite already runs in an installed venv); "
    "its two lipopt commands are shown and run below it",
    "make test": "runs the whole test suite, this file included",
    "lipopt sweep sweep.toml --out results/sweep.csv --executor dask --scheduler tcp://HOST:8786":
        "needs a running Dask scheduler at HOST; the dask executor is tested in tests/test_sweep.py",
}


@dataclass
class Block:
    lang: str
    text: str
    line: int  # 1-based line of the opening fence


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text`` in order."""
    blocks = []
    for m in re.finditer(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M):
        blocks.append(Block(m.group(1).lower(), m.group(2), text.count("\n", 0, m.start()) + 1))
    return blocks


def shell_commands(block: Block) -> list[str]:
    """The command lines of a shell block (backslash continuations joined, comments kept)."""
    lines, pending = [], ""
    for raw in block.text.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if line and not line.startswith("#"):
            lines.append(line.removeprefix("$ "))
    return lines


def _without_comment(line: str) -> str:
    return shlex.join(shlex.split(line, comments=True))


def expected_code(line: str) -> int:
    found = re.search(r"#.*exit code (\d+)", line)
    return int(found.group(1)) if found else 0


# ---------------------------------------------------------------------------------------------
# The methods table, rendered from the registry
# ---------------------------------------------------------------------------------------------
def methods_table() -> str:
    """The README's methods table from :func:`lipopt.registry.methods`."""
    from lipopt.registry import methods

    symbol = {"inf": "ℓ∞", "2": "ℓ2", "1": "ℓ1"}
    hierarchy = {"level": "level k", "order": "order d", None: ""}
    rows = [
        "| method | kind | norms | global | local | residual | hierarchy | what it is |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in methods().items():
        cells = (
            f"`{name}`",
            m.kind,
            " ".join(symbol[n] for n in m.norms),
            "yes" if m.supports_global else "—",
            "yes" if m.supports_local else "—",
            "yes" if m.supports_residual else "—",
            hierarchy[m.hierarchy],
            m.summary,
        )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def readme_methods_table(text: str) -> str:
    found = re.search(r"<!-- methods-table:begin.*?-->\n(.*?)\n<!-- methods-table:end -->", text, re.S)
    assert found, "README.md has no <!-- methods-table:begin --> … <!-- methods-table:end --> section"
    return found.group(1).strip()


def test_methods_table_matches_registry() -> None:
    from lipopt.registry import methods

    text = README.read_text(encoding="utf-8")
    table = readme_methods_table(text)
    names = [re.match(r"\| `([^`]+)`", row).group(1) for row in table.splitlines()[2:]]
    assert names == list(methods()), "README methods table: names differ from the registry"
    assert table == methods_table(), "README methods table is stale: run python tests/test_readme.py"


# ---------------------------------------------------------------------------------------------
# Replaying the examples
# ---------------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _table_rows(text: str, names: set[str]) -> list[tuple[str, str]]:
    """(method and level, upper bound) per table row, and ("best", value) of the best line."""
    rows = []
    for line in text.splitlines():
        tokens = line.split()
        if tokens and tokens[0] in names and ("yes" in tokens or "NO" in tokens):
            mark = tokens.index("yes") if "yes" in tokens else tokens.index("NO")
            rows.append((" ".join(tokens[: mark - 1]), tokens[mark - 1]))
        elif line.startswith("best certified:"):
            rows.append(("best", tokens[2]))
    return rows


def _check_output(shown: Block, printed: str, command: str) -> None:
    from lipopt.registry import methods

    expected = _table_rows(shown.text, set(methods()))
    assert expected, f"README line {shown.line}: the output block shows no table rows"
    assert _table_rows(printed, set(methods())) == expected, (
        f"README line {shown.line}: the output shown differs from what `{command}` prints:\n{printed}"
    )


def _run_shell_block(block: Block, cwd: Path, seen: set[str]) -> str:
    """Run the block's lipopt lines; return the last one's stdout."""
    last = ""
    for line in shell_commands(block):
        command = _without_comment(line)
        if command in NOT_RUN:
            seen.add(command)
            continue
        assert command.startswith("lipopt "), (
            f"README line {block.line}: `{command}` is neither a lipopt command nor listed in NOT_RUN"
        )
        argv = [sys.executable, "-m", "lipopt.cli", *shlex.split(command)[1:]]
        proc = _run(argv, cwd)
        want = expected_code(line)
        assert proc.returncode == want, (
            f"README line {block.line}: `{command}` exited {proc.returncode} (expected {want})\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
        last = proc.stdout
    return last


def _run_python_block(block: Block, cwd: Path) -> None:
    script = cwd / f"readme_block_{block.line}.py"
    script.write_text(block.text, encoding="utf-8")
    proc = _run([sys.executable, str(script)], cwd)
    assert proc.returncode == 0, (
        f"README python block at line {block.line} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )


def test_readme_examples_run_as_written(tmp_path: Path) -> None:
    for name in ("data", "examples"):
        (tmp_path / name).symlink_to(REPO / name, target_is_directory=True)
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    seen: set[str] = set()
    previous: Block | None = None
    last_output = ""
    ran = 0
    for block in blocks:
        if block.lang == "python":
            _run_python_block(block, tmp_path)
            ran += 1
        elif block.lang in SHELL_LANGS:
            last_output = _run_shell_block(block, tmp_path, seen)
            ran += 1
        elif block.lang == "toml":
            first = block.text.splitlines()[0]
            found = re.match(r"#\s*file:\s*(\S+)", first)
            assert found, f"README line {block.line}: a toml block must start with '# file: NAME'"
            (tmp_path / found.group(1)).write_text(block.text, encoding="utf-8")
        elif block.lang == "text":
            assert previous is not None and previous.lang in SHELL_LANGS, (
                f"README line {block.line}: an output block must follow the command block it shows"
            )
            _check_output(block, last_output, shell_commands(previous)[-1])
        else:
            pytest.fail(f"README line {block.line}: unknown code block language {block.lang!r}")
        previous = block
    assert ran >= 5
    assert seen == set(NOT_RUN), f"NOT_RUN lists lines that are not in the README: {set(NOT_RUN) - seen}"


def test_every_fence_is_a_block() -> None:
    """No code block escapes the parser (a fence it did not pair would hide examples)."""
    text = README.read_text(encoding="utf-8")
    fences = [line for line in text.splitlines() if line.startswith("```")]
    assert len(fences) == 2 * len(readme_blocks(text))


def test_demo_commands_are_the_makefiles() -> None:
    """The README shows what `make demo` runs: the Makefile's demo recipe, NET filled in."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    net = re.search(r"^NET \?= (\S+)", makefile, re.M).group(1)
    recipe = re.search(r"^demo:.*\n((?:\t.*\n?)+)", makefile, re.M).group(1)
    joined = re.sub(r"\\\n\s*", " ", recipe)
    demo = [
        " ".join(line.strip().replace("$(BIN)/", "").replace("$(NET)", net).split())
        for line in joined.splitlines()
        if line.strip()
    ]
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    shown = next(b for b in blocks if b.lang in SHELL_LANGS and "make demo" not in b.text)
    assert [_without_comment(c) for c in shell_commands(shown)] == demo


def test_parsers_on_a_sample() -> None:
    block = Block("", "# a comment\nlipopt bound net.npz \\\n  --norm 2   # exit code 2\nmake demo\n", 1)
    assert shell_commands(block) == ["lipopt bound net.npz --norm 2   # exit code 2", "make demo"]
    assert _without_comment(shell_commands(block)[0]) == "lipopt bound net.npz --norm 2"
    assert expected_code(shell_commands(block)[0]) == 2
    table = "naive   1705.95  yes  optimal\nlp   3   145.297  NO  time_limit\nbest certified: 139.609 (bab)"
    rows = [("naive", "1705.95"), ("lp 3", "145.297"), ("best", "139.609")]
    assert _table_rows(table, {"naive", "lp"}) == rows


if __name__ == "__main__":
    print(methods_table())
