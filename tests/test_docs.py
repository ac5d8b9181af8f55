"""The code blocks of README.md and docs/*.md stay true, like litgpt's test_readme.py.

Every fenced block either runs here or carries a marker on the line before it:
`<!-- doc-test: skip (why) -->` (it needs the Hub, a GPU or a running server, or it is illustrative).
Python blocks run; shell blocks run when every command in them is `python -m adapter_core ...`, each
through the CLI's entry point in the page's interpreter.

Fast tests: every block is well formed, every Python block compiles, every `python -m adapter_core`
command (in any block) names a real subcommand and real flags, and parses whole in a block that runs;
every relative link and anchor resolves. Each skipped block is reported as a skipped test with its reason.

Slow tests: the blocks run, page by page, in one scratch folder that holds a link to `sample_data/`, with
`ADAPTER_STUDIO_HOME` (and `HOME`) inside it and the Hub offline. The README runs first, because later
pages use the adapter its quick start trains (`runs/routing`). A page's Python blocks share one
interpreter, one after another, as in one session; so do its CLI commands, through `adapter_core.cli.main`
(what `python -m adapter_core` runs). Run as a script, this file is that page runner.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT

PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(.*)$")
MARKER = re.compile(r"^<!--\s*doc-test:\s*skip\s*\((?P<why>.+)\)\s*-->$")
ANY_MARKER = re.compile(r"<!--\s*doc-test")
SHELL = {"bash", "sh", "shell"}
CLI = "python -m adapter_core"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PAGE_TIMEOUT_S = 1800  # a loaded 2-core machine trains the quick start's 30 steps in a minute or two


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, counted from 1
    lang: str
    code: str
    skip: str | None  # the marker's reason

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def commands(self) -> list[str]:
        """A shell block's commands: continuation lines joined, blank lines and comment lines dropped."""
        joined = re.sub(r"\\\n\s*", " ", self.code)
        return [c.strip() for c in joined.splitlines() if c.strip() and not c.strip().startswith("#")]

    def runs(self) -> bool:
        return self.skip is None


def parse(page: str) -> tuple[list[Block], list[str]]:
    """The page's fenced blocks, and what is wrong with its markers and fences."""
    lines = (ROOT / page).read_text("utf-8").splitlines()
    blocks, problems = [], []
    previous = ""  # the last non-blank line outside a block
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if not fence:
            if ANY_MARKER.search(line) and not MARKER.match(line.strip()):
                problems.append(f"{page}:{i + 1}: write the marker as <!-- doc-test: skip (why) -->")
            if line.strip():
                if MARKER.match(previous):
                    problems.append(f"{page}:{i + 1}: a doc-test marker must come right before a code block")
                previous = line.strip()
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            problems.append(f"{page}:{i + 1}: this code block is never closed")
            break
        marker = MARKER.match(previous)
        code = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(page, i + 1, fence.group(1).strip(), code, marker.group("why") if marker else None))
        previous, i = "", end + 1
    return blocks, problems


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in parse(page)[0]]


def cli_words(command: str) -> list[str] | None:
    """The arguments after `-m adapter_core` (python, torchrun or accelerate launch), or None."""
    words = shlex.split(command, comments=True)
    for k in range(len(words) - 1):
        if words[k] == "-m" and words[k + 1] == "adapter_core":
            return words[k + 2 :]
    return None


# Fast: the blocks are well formed -----------------------------------------------------------------------
def test_every_block_runs_or_says_why_not():
    problems = [p for page in PAGES for p in parse(page)[1]]
    for block in all_blocks():
        if not block.lang:
            problems.append(f"{block.where}: name the block's language (```python, ```bash, ```text)")
        if not block.runs():
            continue
        if block.lang in SHELL:
            others = [c for c in block.commands() if not c.startswith(CLI + " ")]
            if others:
                problems.append(f"{block.where}: {others[0]!r} cannot run here; mark the block doc-test: skip (why)")
        elif block.lang != "python":
            problems.append(f"{block.where}: a {block.lang} block does not run; mark it doc-test: skip (why)")
    assert not problems, "\n".join(problems)
    assert sum(b.runs() for b in all_blocks()) >= 5  # the parser found the blocks that run


def test_python_blocks_compile():
    for block in all_blocks():
        if block.lang == "python":
            compile(block.code, block.where, "exec")  # a SyntaxError names the page and line


def _parser_and_options() -> tuple[argparse.ArgumentParser, dict[str, set[str]]]:
    from adapter_core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def test_cli_commands_name_real_subcommands_and_flags():
    parser, options = _parser_and_options()
    problems, checked = [], 0
    for block in all_blocks():
        if block.lang not in SHELL:
            continue
        for command in block.commands():
            words = cli_words(command)
            if words is None:
                continue
            checked += 1
            if not words or words[0] not in options:
                problems.append(f"{block.where}: no command {words[:1]} in {command!r}")
                continue
            flags = [w.strip("[]").split("=")[0] for w in words[1:] if w.strip("[]").startswith("--")]
            problems += [f"{block.where}: `{words[0]}` has no option {f}" for f in flags if f not in options[words[0]]]
            if block.runs():  # the whole command parses, values included
                err = io.StringIO()
                with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
                    parser.parse_args(words)
                if err.getvalue():
                    problems.append(f"{block.where}: {command!r}: {err.getvalue().strip().splitlines()[-1]}")
    assert checked >= 10, checked
    assert not problems, "\n".join(problems)


DEFAULT_SAID = re.compile(r"`(--[a-z-]+)` \((\d[\d,.]*)\)")  # "`--score-pairs` (8)": a flag and its default


def _number(text: object) -> float | None:
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return None


def test_defaults_the_pages_give_are_the_clis():
    """Where a page gives a flag's default in brackets, some command has that flag with that default (its
    own, or the one its help names where the flag defaults to None and a lower layer decides)."""
    parser = _parser_and_options()[0]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    defaults: dict[str, set[float | None]] = {}
    for command in sub.choices.values():
        for a in command._actions:
            said = [a.default, *re.findall(r"default: (\d[\d,.]*)", a.help or "")]
            for flag in a.option_strings:
                defaults.setdefault(flag, set()).update(map(_number, said))
    problems, checked = [], 0
    for page in PAGES:
        for flag, said in DEFAULT_SAID.findall((ROOT / page).read_text("utf-8")):
            checked += 1
            if _number(said) not in defaults.get(flag, set()):
                problems.append(f"{page}: {flag} ({said}); the CLI's defaults: {defaults.get(flag)}")
    assert checked >= 5 and not problems, "\n".join(problems)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text("utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.M)}


def test_links_and_anchors_resolve():
    problems = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", (ROOT / page).read_text("utf-8"), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            file = (ROOT / page).parent / path if path else ROOT / page
            if not file.exists():
                problems.append(f"{page}: {target} does not exist")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                problems.append(f"{page}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)


def test_the_readme_keeps_the_spaces_front_matter_and_stays_short():
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    front = lines[: lines.index("---", 1) + 1]
    assert front[0] == "---" and "sdk: gradio" in front and "app_file: app.py" in front and "hf_oauth: true" in front
    assert len(lines) <= 200, f"the README has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("block", [b for b in all_blocks() if not b.runs()], ids=lambda b: b.where)
def test_marked_block_is_skipped(block: Block):
    pytest.skip(f"{block.where}: {block.skip}")


# Slow: the blocks run ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One folder for every page, as a reader's checkout: sample_data/ there, and what earlier pages made."""
    work = tmp_path_factory.mktemp("docs")
    (work / "sample_data").symlink_to(ROOT / "sample_data")
    (work / "home").mkdir()
    return {"dir": work, "done": {}}


def run_page(scratch: dict, page: str) -> subprocess.CompletedProcess | None:
    """Run `page`'s blocks (once), after the README's; None when none of them runs."""
    if page != "README.md":
        run_page(scratch, "README.md")
    if page in scratch["done"]:
        return scratch["done"][page]
    steps = [
        {"where": b.where, "lang": b.lang, "code": b.code, "commands": b.commands() if b.lang in SHELL else []}
        for b in parse(page)[0]
        if b.runs()
    ]
    result = None
    if steps:
        work = scratch["dir"]
        plan = work / f".doc-test-{page.replace('/', '-')}.json"
        plan.write_text(json.dumps(steps))
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ADAPTER_STUDIO_HOME": str(work / "home"),
            "HOME": str(work / "home"),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        result = subprocess.run(
            [sys.executable, __file__, str(plan)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=PAGE_TIMEOUT_S,
        )
    scratch["done"][page] = result
    return result


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(b.runs() for b in parse(p)[0])])
def test_page_blocks_run(scratch, page: str):
    result = run_page(scratch, page)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    ran = re.findall(r"^--- doc-test: (\S+)$", result.stdout, re.M)
    assert ran == [b.where for b in parse(page)[0] if b.runs()]  # every block ran, in order


# The page runner (run as a script, in the scratch folder) ---------------------------------------------------
def drive(plan: Path) -> int:
    from adapter_core.cli import main

    namespace: dict = {"__name__": "__main__"}
    for step in json.loads(plan.read_text()):
        print(f"--- doc-test: {step['where']}", flush=True)
        if step["lang"] == "python":
            try:
                exec(compile(step["code"], step["where"], "exec"), namespace)
            except BaseException:
                import traceback

                traceback.print_exc()
                print(f"FAILED {step['where']}", file=sys.stderr)
                return 1
            sys.stdout.flush()
            continue
        for command in step["commands"]:
            # In this interpreter, through the CLI's own entry point (`python -m adapter_core` calls
            # `main`), so that each command does not import torch again; tests/test_engine.py runs the CLI
            # as a real subprocess.
            code = main(cli_words(command))
            sys.stdout.flush()
            if code:
                print(f"FAILED {step['where']}: {command} (exit code {code})", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(drive(Path(sys.argv[1])))
