"""The shell commands of a Markdown document (README.md, docs/guide.md), so
that tests can run every one of them."""

from __future__ import annotations

import re

PROGRAMS = ("sparse-mlp", "python", "python3", "pip", "cargo", "mpiexec", "bash")


def commands(text: str) -> list[str]:
    """The commands in ``text``: lines of indented blocks and inline code
    spans that start with one of :data:`PROGRAMS` (spans need an argument:
    a bare program name is a mention), without comments or line breaks."""
    body = re.sub(r"```.*?```", "", text, flags=re.S)
    found = []
    lines = body.split("\n")
    for i, line in enumerate(lines):
        indented = line.startswith("    ") and not line.startswith("     ")
        if indented and (lines[i - 1].strip() == "" or lines[i - 1].startswith("    ")):
            command = re.split(r"\s+#", line.strip())[0].strip()
            if command.split(" ")[0] in PROGRAMS:
                found.append(command)
    for span in re.findall(r"`([^`]+)`", body):
        command = " ".join(span.split())
        words = command.split(" ")
        if words[0] in PROGRAMS and len(words) > 1:
            found.append(command)
    return list(dict.fromkeys(found))


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language``, in order."""
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def indented_block_after(text: str, first_line: str) -> str:
    """The indented block whose first line is ``first_line``, unindented."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip() == first_line)
    block = []
    for line in lines[start:]:
        if not line.startswith("    ") and line.strip():
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"
