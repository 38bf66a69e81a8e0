"""Java source naming: the file is named after the public class, the run starts the class with main."""

from __future__ import annotations

import pytest

from codeapi.languages.java import find_java_source


@pytest.mark.parametrize(
    ("code", "file_name", "entry"),
    [
        ("public class Main { public static void main(String[] a) {} }", "Main.java", "Main"),
        ("class Code { public static void main(String[] a) {} }", "Code.java", "Code"),
        (
            "import java.util.*;\nclass Helper {}\npublic class App {\n static public void main(String... a) {}\n}",
            "App.java",
            "App",
        ),
        ("public class Outer {}\nclass Runner { public static void main(String[] a) {} }", "Outer.java", "Runner"),
        (
            "// class Fake { static void main(String[] a) }\nclass Real { static void main(String[] a) {} }",
            "Real.java",
            "Real",
        ),
        ('class S { static void main(String[] a) { String s = "class Nope"; } }', "S.java", "S"),
        ("public record Point(int x) { public static void main(String[] a) {} }", "Point.java", "Point"),
        ("System.out.println(1);", "Main.java", "Main"),
    ],
)
def test_find_java_source(code: str, file_name: str, entry: str) -> None:
    source = find_java_source(code)
    assert (source.name, source.entry) == (file_name, entry)
