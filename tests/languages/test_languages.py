"""Every language in the real sandbox: hello world, reading an uploaded file, writing a file to download."""

from __future__ import annotations

import httpx
import pytest

from codeapi.languages import LANGUAGES
from tests.conftest import run, upload

# Each program reads /mnt/data/input.txt (uploaded) and writes output.txt containing the text upper-cased.
ROUND_TRIP = {
    "py": "t = open('input.txt').read()\nopen('output.txt', 'w').write(t.upper())\nprint(len(t))",
    "js": "const fs = require('fs');\nconst t = fs.readFileSync('input.txt', 'utf8');\n"
    "fs.writeFileSync('output.txt', t.toUpperCase());\nconsole.log(t.length);",
    "ts": "import * as fs from 'fs';\nconst t: string = fs.readFileSync('input.txt', 'utf8');\n"
    "fs.writeFileSync('output.txt', t.toUpperCase());\nconsole.log(t.length);",
    "go": 'package main\n\nimport (\n\t"fmt"\n\t"os"\n\t"strings"\n)\n\nfunc main() {\n'
    '\tb, _ := os.ReadFile("input.txt")\n\tos.WriteFile("output.txt", []byte(strings.ToUpper(string(b))), 0644)\n'
    "\tfmt.Println(len(b))\n}\n",
    "java": "import java.nio.file.*;\n\nclass Helper {}\n\npublic class Solution {\n"
    "  public static void main(String[] args) throws Exception {\n"
    '    String t = Files.readString(Path.of("input.txt"));\n'
    '    Files.writeString(Path.of("output.txt"), t.toUpperCase());\n    System.out.println(t.length());\n  }\n}\n',
    "c": '#include <stdio.h>\n#include <ctype.h>\nint main(void) {\n  FILE *in = fopen("input.txt", "r");\n'
    '  FILE *out = fopen("output.txt", "w");\n  int c, n = 0;\n'
    "  while ((c = fgetc(in)) != EOF) { fputc(toupper(c), out); n++; }\n"
    '  fclose(out);\n  printf("%d\\n", n);\n  return 0;\n}\n',
    "cpp": "#include <fstream>\n#include <iostream>\n#include <sstream>\n#include <algorithm>\n"
    'int main() {\n  std::ifstream in("input.txt");\n  std::stringstream ss; ss << in.rdbuf();\n'
    "  std::string t = ss.str();\n  std::string u = t;\n"
    "  std::transform(u.begin(), u.end(), u.begin(), ::toupper);\n"
    '  std::ofstream("output.txt") << u;\n  std::cout << t.size() << std::endl;\n}\n',
    "php": "<?php\n$t = file_get_contents('input.txt');\nfile_put_contents('output.txt', strtoupper($t));\n"
    'echo strlen($t), "\\n";\n',
    "rs": 'use std::fs;\nfn main() {\n    let t = fs::read_to_string("input.txt").unwrap();\n'
    '    fs::write("output.txt", t.to_uppercase()).unwrap();\n    println!("{}", t.len());\n}\n',
    "r": "t <- readChar('input.txt', file.info('input.txt')$size)\nwriteChar(toupper(t), 'output.txt', eos = NULL)\n"
    "cat(nchar(t), '\\n', sep = '')\n",
    "f90": "program roundtrip\n  implicit none\n  character(len=100) :: line\n  integer :: i, n\n"
    "  open(10, file='input.txt', status='old', access='stream', form='unformatted')\n"
    "  inquire(10, size=n)\n  read(10) line(1:n)\n  close(10)\n"
    "  do i = 1, n\n    if (line(i:i) >= 'a' .and. line(i:i) <= 'z') line(i:i) = achar(iachar(line(i:i)) - 32)\n  end do\n"
    "  open(11, file='output.txt', status='replace', access='stream', form='unformatted')\n"
    "  write(11) line(1:n)\n  close(11)\n  print '(i0)', n\nend program roundtrip\n",
    "d": 'import std.stdio, std.file, std.uni;\nvoid main() {\n  auto t = readText("input.txt");\n'
    '  std.file.write("output.txt", toUpper(t));\n  writeln(t.length);\n}\n',
    "bash": "t=$(cat input.txt)\nprintf '%s' \"${t^^}\" > output.txt\nprintf '%s' \"$t\" | wc -c\n",
}
INPUT = "hello sandbox"


def test_every_language_has_a_round_trip_program() -> None:
    assert set(ROUND_TRIP) == {spec.id for spec in LANGUAGES}


@pytest.mark.parametrize("spec", LANGUAGES, ids=[spec.id for spec in LANGUAGES])
async def test_hello_world(client: httpx.AsyncClient, spec) -> None:  # type: ignore[no-untyped-def]
    program, expected = spec.hello
    body = await run(client, spec.id, program)
    assert body["stdout"] == expected, body["stderr"]


@pytest.mark.parametrize("lang", sorted(ROUND_TRIP))
async def test_reads_an_uploaded_file_and_writes_a_downloadable_one(client: httpx.AsyncClient, lang: str) -> None:
    uploaded = await upload(client, "input.txt", INPUT.encode(), kind="user", id="u1")
    ref = {
        "id": uploaded["files"][0]["fileId"],
        "name": "input.txt",
        "storage_session_id": uploaded["storage_session_id"],
        "kind": "user",
    }
    body = await run(client, lang, ROUND_TRIP[lang], files=[ref])
    assert body["stdout"].strip() == str(len(INPUT)), body["stderr"]
    outputs = {item["name"]: item["id"] for item in body["files"]}
    assert list(outputs) == ["output.txt"], body
    download = await client.get(f"/download/{body['session_id']}/{outputs['output.txt']}")
    assert download.content == INPUT.upper().encode()
