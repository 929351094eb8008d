"""Every example in README.md runs as written, after exactly the install the README gives.

The checkout (its tracked and untracked, not ignored, files) is copied to a temporary
directory; there the README's first command installs the service into a fresh
``.venv`` (``python3`` being the interpreter running these tests) and starts it on
127.0.0.1:8000, where the examples expect it.  Then every block fenced ``bash`` or
``python`` runs in README order, in that directory: ``bash`` with ``bash -euo pipefail``,
``python`` with ``.venv/bin/python``.  A block may install what it needs (the client,
other tools) into ``.venv`` itself; what one block leaves (files, packages) the next
finds.  A line ``# Prints => ...`` or ``# Returns => ...`` states what the commands
before it write; it is compared with what they wrote (see :func:`check_claim`).

Other fences are not run: ``text`` (program output, listings) and ``sh`` (commands
that need Docker or run for minutes).  A block without a language, or with another
name for a shell or Python, is refused, so nothing escapes by accident.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests import servers

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PORT = 8000  # the examples name it
RUN = {"bash", "python"}
#: Names of a shell or of Python that would keep a block from running without saying so.
REFUSED = {"", "shell", "console", "zsh", "py", "python3", "pycon", "ipython"}
INSTALL_TIMEOUT = 900
BLOCK_TIMEOUT = 600
MARKER = "<<readme example: the claim above ends here>>"
PRINT_MARKER = f"print({chr(10) + MARKER!r}, flush=True)"
ECHO_MARKER = f"printf '\\n%s\\n' '{MARKER}'"
CLAIM = re.compile(r"^(?P<indent>\s*)# (?:Prints|Returns) => (?P<text>.*)$")
CONTINUED = re.compile(r"^\s*#\s{2,}(?P<text>\S.*)$")
FIRST_SCREEN = re.compile(r"^(?P<install>[^#\n]+?) && (?P<serve>\S+ -m service)\s*$", re.MULTILINE)


@dataclass
class Block:
    lang: str
    line: int  # of the opening fence, 1-based
    section: str
    code: str

    def where(self) -> str:
        return f"README.md line {self.line} ({self.section}, {self.lang})"


@dataclass
class Claim:
    line: int  # in the README, 1-based
    lines: list[str] = field(default_factory=list)


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order."""
    found: list[Block] = []
    section = "top"
    opened: tuple[str, int, list[str]] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if opened is None:
            if line.startswith("#") and not line.startswith("#!"):
                section = line.lstrip("#").strip()
            elif line.startswith("```"):
                opened = (line[3:].strip(), number, [])
        elif line.rstrip() == "```":
            lang, start, body = opened
            found.append(Block(lang, start, section, "\n".join(body) + "\n"))
            opened = None
        else:
            opened[2].append(line)
    assert opened is None, f"README.md line {opened[1]}: the block is never closed"
    return found


def instrument(block: Block) -> tuple[str, list[Claim]]:
    """The block with a marker written after each claim, and the claims in order."""
    out: list[str] = []
    claims: list[Claim] = []
    lines = block.code.splitlines()
    i = 0
    while i < len(lines):
        match = CLAIM.match(lines[i])
        out.append(lines[i])
        i += 1
        if not match:
            continue
        claim = Claim(block.line + i, [match["text"].strip()])
        while i < len(lines) and (more := CONTINUED.match(lines[i])):
            claim.lines.append(more["text"].strip())
            out.append(lines[i])
            i += 1
        claims.append(claim)
        indent = match["indent"]
        out.append(indent + (PRINT_MARKER if block.lang == "python" else ECHO_MARKER))
    return "\n".join(out) + "\n", claims


def check_claim(claim: list[str], output: str) -> str | None:
    """None when ``output`` is what ``claim`` says it is, else why not.

    Without ``...`` the claim is the output, line for line (surrounding spaces aside).
    With it, ``...`` stands for anything: the pieces between (and each line of the claim)
    appear in the output in order, the first at its start and the last at its end unless
    ``...`` stands there.  A remark after three spaces and "(" is not part of the claim.
    A status before a body (``422 {...}``) is the status the problem+json body names, as
    ``curl -s`` prints the body only.
    """
    lines = [re.split(r"\s{3,}\(", line)[0].strip() for line in claim]
    status = re.match(r"(\d{3}) (?=\{)", lines[0])
    if status:
        if f'"status":{status[1]}' not in output:
            return f'the reply is not a {status[1]}: no "status":{status[1]} in it'
        lines[0] = lines[0][status.end() :]
    text = output.strip()
    if not any("..." in line for line in lines):
        got = [line.strip() for line in text.splitlines()]
        return None if got == lines else f"expected {lines!r}, got {got!r}"
    pieces = [p.strip(" ,") for line in lines for p in line.split("...")]
    pieces = [p for p in pieces if p]
    at = 0
    for n, piece in enumerate(pieces):
        found = text.find(piece, at)
        if found < 0:
            return f"{piece!r} is not in the output after position {at}: {text!r}"
        if n == 0 and not lines[0].startswith("...") and found != 0:
            return f"the output does not start with {piece!r}: {text!r}"
        at = found + len(piece)
    if not lines[-1].endswith("...") and not text.endswith(pieces[-1]):
        return f"the output does not end with {pieces[-1]!r}: {text!r}"
    return None


def run_block(block: Block, cwd: Path, env: dict[str, str], scripts: Path) -> list[str]:
    """Run one block; what went wrong, if anything."""
    script, claims = instrument(block)
    path = scripts / f"line{block.line}.{'py' if block.lang == 'python' else 'sh'}"
    path.write_text(script, encoding="utf-8")
    # A Python block runs from a file outside the checkout, so its imports come from .venv.
    cmd = (
        [str(cwd / ".venv/bin/python"), str(path)]
        if block.lang == "python"
        else ["bash", "-euo", "pipefail", str(path)]
    )
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return [f"{block.where()}: still running after {BLOCK_TIMEOUT} s"]
    report = f"\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    if done.returncode != 0:
        return [f"{block.where()}: exit status {done.returncode}{report}"]
    segments = re.split(rf"^{re.escape(MARKER)}$", done.stdout, flags=re.MULTILINE)
    problems = []
    for claim, segment in zip(claims, segments, strict=False):
        if (why := check_claim(claim.lines, segment)) is not None:
            problems.append(f"README.md line {claim.line} ({block.section}): {why}")
    if len(segments) != len(claims) + 1:
        problems.append(f"{block.where()}: {len(claims)} claims, {len(segments) - 1} reached{report}")
    return problems


def first_screen(block: Block) -> tuple[str, str]:
    """The README's first command, split into its install part and the command that serves."""
    match = FIRST_SCREEN.search(block.code)
    assert match, f"{block.where()}: no `<install> && .venv/bin/python -m service` line:\n{block.code}"
    return match["install"], match["serve"]


def copy_checkout(target: Path) -> None:
    """The files of the working tree that git would commit (tracked or new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in sorted(set(listed.decode().split("\0")) - {""}):
        source = ROOT / name
        if source.is_file():  # not one deleted in the working tree
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def environment(shims: Path) -> dict[str, str]:
    """A user's shell: ``python3`` is the interpreter under these tests; nothing of the test venv."""
    shims.mkdir()
    base = Path(getattr(sys, "_base_executable", sys.executable))
    (shims / "python3").write_text(f'#!/bin/sh\nexec "{base}" "$@"\n')
    (shims / "python3").chmod(0o755)
    own_bin = str(Path(sys.prefix) / "bin")
    path = [str(shims), *(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != own_bin)]
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PROMETHEUS_MULTIPROC_DIR", "COV_CORE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACTIVATION_", *dropped))}
    return env | {"PATH": os.pathsep.join(path)}


def port_is_free() -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            s.bind((servers.HOST, PORT))
        except OSError:
            return False
    return True


def wait_until_healthy(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://{servers.HOST}:{PORT}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the README's server did not start on port {PORT}:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


README_BLOCKS = blocks(README.read_text(encoding="utf-8"))


def test_readme_fences_say_whether_they_run() -> None:
    refused = [b.where() for b in README_BLOCKS if b.lang in REFUSED]
    assert not refused, f"fence these as bash or python (run) or as text or sh (not run): {refused}"
    runnable = [b for b in README_BLOCKS[1:] if b.lang in RUN]
    assert len(runnable) >= 5, [b.where() for b in runnable]
    assert any("from activation_client import" in b.code for b in runnable if b.lang == "python")


def test_every_readme_example_runs_as_written() -> None:
    install, serve = first_screen(README_BLOCKS[0])
    if not port_is_free():
        pytest.fail(
            f"port {PORT} on {servers.HOST} is taken: the README's examples need it; free it and rerun"
        )
    with tempfile.TemporaryDirectory(prefix="readme-") as tmp:
        work, repo = Path(tmp), Path(tmp) / "repo"
        copy_checkout(repo)
        env = environment(work / "bin")
        installed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", install],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        assert installed.returncode == 0, f"{install}\n{installed.stdout[-4000:]}\n{installed.stderr[-4000:]}"
        (scripts := work / "blocks").mkdir()
        log = work / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                ["bash", "-c", f"exec {serve}"], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_until_healthy(server, log)
            problems = [
                p for b in README_BLOCKS[1:] if b.lang in RUN for p in run_block(b, repo, env, scripts)
            ]
        finally:
            servers.stop(server)  # by its PID: SIGTERM, then SIGKILL after 20 s
        assert not problems, "\n\n".join([*problems, f"--- the server's log\n{log.read_text()[-4000:]}"])
        assert server.returncode == 0, (
            f"the server exited {server.returncode} on SIGTERM:\n{log.read_text()[-4000:]}"
        )


# -- the checker itself --------------------------------------------------------------------------


def test_check_claim_compares_a_plain_claim_line_for_line() -> None:
    assert check_claim(["[-0.3 -0.2  0. ]"], "[-0.3 -0.2  0. ]\n") is None
    assert check_claim(["[-0.3 -0.2  0. ]"], "[-0.3 -0.2  0.1]\n") is not None
    assert check_claim(["float32 [0.5]", "422 [1]"], "float32 [0.5]\n422 [1]\n") is None
    assert check_claim(["float32 [0.5]", "422 [1]"], "float32 [0.5]\n") is not None


def test_check_claim_elisions_remarks_and_status() -> None:
    body = '{"activation":"softmax","params":{},"axis":0,"y":[0.1,0.9]}'
    assert check_claim(['... "axis":0,"y":[0.1,0.9]}   (a remark)'], body) is None
    assert check_claim(['... "axis":0,"y":[0.1,0.8]}'], body) is not None
    assert check_claim(['{"activation":"relu", ...'], body) is not None  # must start with it
    assert check_claim(['... "axis":0'], body) is not None  # must end with it
    assert check_claim(['..."y":[0.1,0.9]} ... "axis":0 ...'], body) is not None  # in order
    problem = '{"status":422,"detail":"bad","errors":[]}'
    assert check_claim(['422 {"status":422,"detail": ...', '"errors":[]}'], problem) is None
    assert check_claim(['404 {"status":422, ...'], problem) is not None


def test_instrument_marks_each_claim_and_its_continuation() -> None:
    code = "x = 1\nprint(x)\n# Prints => 1\n#           2\nif x:\n    print(x)\n    # Prints => 1\n"
    script, claims = instrument(Block("python", 10, "s", code))
    assert [c.lines for c in claims] == [["1", "2"], ["1"]]
    assert [c.line for c in claims] == [13, 17]
    assert script.count(MARKER) == 2
    assert f"\n    {PRINT_MARKER}\n" in script
    assert blocks("# A\n```bash\necho hi\n```\n```text\nout\n```\n") == [
        Block("bash", 2, "A", "echo hi\n"),
        Block("text", 5, "A", "out\n"),
    ]
