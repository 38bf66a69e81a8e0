"""The tools a program may call: validated definitions and the names code uses for them.

Names follow @librechat/agents, which tells the model these exact spellings: ``-``, spaces and dots
become ``_``, what is not ``[A-Za-z0-9_]`` is dropped, a leading digit gets ``_`` and a reserved word
of the program's language (Python's keywords, bash's reserved words: its ToolCalling) gets ``_tool``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from codeapi.errors import InvalidRequest

MAX_TOOLS = 128
MAX_TOOL_NAME = 128


@dataclass(frozen=True)
class Tool:
    name: str  # as the client registered it; tool_calls carry this one
    identifier: str  # as the program calls it


def identifier_for(name: str, reserved_words: frozenset[str]) -> str:
    normalized = re.sub(r"[^A-Za-z0-9_]", "", re.sub(r"[-\s.]", "_", name))
    if re.match(r"[0-9]", normalized):
        normalized = "_" + normalized
    return normalized + "_tool" if normalized in reserved_words else normalized


def parse_tools(definitions: list[Any], reserved_words: frozenset[str]) -> tuple[Tool, ...]:
    """Each definition needs a string ``name``; the rest (description, parameters) is the client's."""
    if len(definitions) > MAX_TOOLS:
        raise InvalidRequest(f"At most {MAX_TOOLS} tools may be given", field="tools")
    tools: dict[str, Tool] = {}
    for position, definition in enumerate(definitions):
        name = definition.get("name") if isinstance(definition, dict) else None
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_TOOL_NAME:
            raise InvalidRequest(
                f"tools[{position}] needs a name of 1 to {MAX_TOOL_NAME} characters", field=f"tools -> {position}"
            )
        identifier = identifier_for(name, reserved_words)
        if not identifier or identifier.startswith("__"):
            raise InvalidRequest(f"Tool name {name!r} has no usable identifier", field=f"tools -> {position}")
        clash = tools.get(identifier)
        if clash is not None and clash.name != name:
            raise InvalidRequest(
                f"Tools {clash.name!r} and {name!r} both become {identifier!r}", field=f"tools -> {position}"
            )
        tools[identifier] = Tool(name, identifier)
    return tuple(tools.values())


def tools_file(tools: tuple[Tool, ...]) -> str:
    """What the in-sandbox driver reads: [identifier, name] pairs, the bash function index order."""
    return json.dumps([[tool.identifier, tool.name] for tool in tools])


BASH_PRELUDE = r"""__codeapi_tool() {
  local base="$CODEAPI_TOOL_DIR/$BASHPID-$RANDOM$RANDOM" status
  printf '%s' "${2-}" > "$base.in" && mkfifo -m 600 "$base.fifo" || return 1
  printf '%s %s\n' "${base##*/}" "$1" >&"$CODEAPI_TOOL_PIPE"
  IFS= read -r status < "$base.fifo"
  rm -f "$base.in" "$base.fifo"
  if [ "$status" = ok ]; then cat "$base.out"; echo; rm -f "$base.out"; return 0; fi
  cat "$base.out" >&2; echo >&2; rm -f "$base.out"; return 1
}
"""


def bash_script(tools: tuple[Tool, ...], code: str) -> str:
    """The user's script behind one bash function per tool, each taking a JSON string argument."""
    functions = "".join(
        f'{tool.identifier}() {{ __codeapi_tool {index} "${{1-}}"; }}\n' for index, tool in enumerate(tools)
    )
    return f"{BASH_PRELUDE}{functions}{code}\n"
