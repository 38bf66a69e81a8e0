"""Java needs its file named after the public class and runs the class that declares ``main``."""

from __future__ import annotations

import re

from codeapi.languages.spec import SourceFile

COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\])*\"", re.DOTALL)
CLASS = re.compile(r"\b(?:class|record|enum|interface)\s+([A-Za-z_$][\w$]*)")
PUBLIC_CLASS = re.compile(
    r"\bpublic\s+(?:(?:final|abstract|sealed|strictfp)\s+)*(?:class|record|enum|interface)\s+([A-Za-z_$][\w$]*)"
)
MAIN = re.compile(r"\bstatic\s+(?:public\s+|final\s+)*void\s+main\s*\(|\bvoid\s+main\s*\(")

DEFAULT_CLASS = "Main"


def find_java_source(code: str) -> SourceFile:
    """The entry is the innermost class declared before the first ``main`` method."""
    text = COMMENTS.sub(lambda match: " " * len(match.group(0)), code)
    main = MAIN.search(text)
    classes = list(CLASS.finditer(text))
    entry = DEFAULT_CLASS
    if main is not None:
        before = [match for match in classes if match.start() < main.start()]
        if before:
            entry = before[-1].group(1)
    elif classes:
        entry = classes[0].group(1)
    public = PUBLIC_CLASS.search(text)
    file_class = public.group(1) if public else entry
    return SourceFile(f"{file_class}.java", entry)
