"""A griffe extension that lets the docs site render docstrings written in TRL's conventions.

The package's docstrings follow TRL's (so that they read the same as the parents' in an editor and on the Hub), which
the Google-style parser of mkdocstrings does not know. Before griffe parses a docstring, this rewrites:

- grouped parameters, `a, b, c:` (possibly wrapped over lines), into one entry per name with the shared description;
- group headings inside a parameter list, `> Parameters that control the reward`, into a titled parameter section;
- types, `(`str` or [`~transformers.PreTrainedModel`], *optional*, defaults to `"js"`)`, into plain text (`str or
  PreTrainedModel`; the table's Default column shows the default, from the signature);
- cross-references, [`~trl.SFTTrainer`], into a link to another page of the site for this package's exported names,
  into code for others (`SFTTrainer`);
- GitHub callouts, `> [!NOTE]` followed by `> ...` lines, into admonitions.

`tests/test_docs_site.py` builds the site strictly and checks that none of these markers reaches the API page.
"""

import ast
import re
from pathlib import Path

import griffe


_CROSS_REFERENCE = re.compile(r"\[`~?([\w.]+)`\](?!\()")
_BARE_REFERENCE = re.compile(r"(?<![\w`\]])\[(\w+)\](?![(\[])")
_CALLOUT = re.compile(r"^(\s*)> \[!(\w+)\]\s*$")
_GROUP_HEADING = re.compile(r"^(\s+)> (.+)$")
_SECTION_HEADER = re.compile(r"^(Args|Arguments|Parameters|Params):\s*$")
_TYPED_NAME = re.compile(r"^(?P<names>[\w, ]+?)\s*(?:\((?P<type>.*?)\))?\s*:(?P<rest>.*)$")
_DEFAULT = re.compile(r",?\s*defaults to (.+)$")


def _plain(text: str) -> str:
    """Markdown of a type or cross-reference as plain text: `str` or [`~x.Y`], *optional* -> str or Y, optional."""
    text = _CROSS_REFERENCE.sub(lambda match: match.group(1).rsplit(".", 1)[-1], text)
    return text.replace("`", "").replace("*", "")


def _references(text: str, exported: set[str]) -> str:
    def replace(match: re.Match) -> str:
        path = match.group(1)
        name = path.rsplit(".", 1)[-1]
        if name in exported:
            return f"[`{name}`][trl_irl.{name}]"
        return f"`{name}`"

    text = _CROSS_REFERENCE.sub(replace, text)
    return _BARE_REFERENCE.sub(lambda match: f"`{match.group(1)}`", text)


def _callouts(lines: list[str]) -> list[str]:
    """`> [!NOTE]` and its `> ` lines -> a `Note:` admonition (its body indented), with the blank line it needs."""
    result, index = [], 0
    while index < len(lines):
        match = _CALLOUT.match(lines[index])
        if not match:
            result.append(lines[index])
            index += 1
            continue
        indent, kind = match.groups()
        if result and result[-1].strip():
            result.append("")
        result.append(f"{indent}{kind.capitalize()}:")
        index += 1
        while index < len(lines) and lines[index].lstrip().startswith(">"):
            result.append(f"{indent}    {lines[index].lstrip()[1:].strip()}")
            index += 1
    return result


def _parameter_entry(first: str, indent: str) -> list[str] | None:
    """One docstring entry `a, b (type): text` -> the first line of one entry per name, or None if it is not one."""
    match = _TYPED_NAME.match(first.strip())
    if not match:
        return None
    names = [name.strip() for name in match.group("names").split(",") if name.strip()]
    type_text, rest = match.group("type"), match.group("rest").strip()
    if type_text is not None:
        type_text = _plain(type_text)
        # The table's Default column shows the signature's default
        type_text = _DEFAULT.sub("", type_text)
        type_text = type_text.strip().rstrip(",").replace(", optional", "").strip()
    typed = f" ({type_text})" if type_text else ""
    return [f"{indent}{name}{typed}: {rest}".rstrip() for name in names]


def _parameters(lines: list[str]) -> list[str]:
    """Rewrite every parameter section: grouped names split, group headings made into titled sections, plain types."""
    result, index, header = [], 0, None
    while index < len(lines):
        line = lines[index]
        section = _SECTION_HEADER.match(line)
        if section:
            header = section.group(1)
            result.append(line)
            index += 1
            continue
        if header is None:
            result.append(line)
            index += 1
            continue
        if line and not line.startswith(" "):
            header = None  # the section ended
            result.append(line)
            index += 1
            continue
        heading = _GROUP_HEADING.match(line)
        if heading:
            title = heading.group(2).strip()
            if result and _SECTION_HEADER.match(result[-1]):
                result[-1] = f"{header}: {title}"
            else:
                while result and not result[-1].strip():
                    result.pop()
                result += ["", f"{header}: {title}"]
            index += 1
            while index < len(lines) and not lines[index].strip():
                index += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if len(indent) == 4:
            # Names wrapped over several lines end with a comma until the one with the colon
            first = line
            while first.rstrip().endswith(",") and index + 1 < len(lines):
                index += 1
                first = f"{first.rstrip()} {lines[index].strip()}"
            names = _parameter_entry(first, indent)
            if names is None:
                result.append(first)
                index += 1
                continue
            index += 1
            description = []
            while index < len(lines) and (not lines[index].strip() or lines[index].startswith(" " * 5)):
                description.append(lines[index])
                index += 1
            trailing_blank_lines = []
            while description and not description[-1].strip():
                trailing_blank_lines.append(description.pop())
            for name_line in names:
                result += [name_line, *description]
            result += trailing_blank_lines  # what follows (an admonition) may need them
            continue
        result.append(line)
        index += 1
    return result


class TRLDocstrings(griffe.Extension):
    """Rewrites each docstring of the package once, before mkdocstrings parses it (see the module's docstring)."""

    def __init__(self) -> None:
        # Read statically: importing the package would import torch for every build
        source = (Path(__file__).resolve().parent.parent / "trl_irl" / "__init__.py").read_text()
        exported = next(
            node.value
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Assign)
            and any(getattr(target, "id", None) == "__all__" for target in node.targets)
        )
        self.exported = set(ast.literal_eval(exported))

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        lines = _callouts(docstring.value.splitlines())
        lines = _parameters(lines)
        docstring.value = _references("\n".join(lines), self.exported)
