from codeapi.languages.spec import BuildCache, LanguageSpec, SourceFile, ToolCalling, WarmRepl
from codeapi.languages.table import (
    DEFAULT_TOOL_CALLING_LANGUAGE,
    LANGUAGES,
    TOOL_CALLING_LANGUAGES,
    build_cache_language,
    get_language,
    get_tool_calling,
    sandbox_probe,
    warm_repl_language,
)

__all__ = [
    "DEFAULT_TOOL_CALLING_LANGUAGE",
    "LANGUAGES",
    "TOOL_CALLING_LANGUAGES",
    "BuildCache",
    "LanguageSpec",
    "SourceFile",
    "ToolCalling",
    "WarmRepl",
    "build_cache_language",
    "get_language",
    "get_tool_calling",
    "sandbox_probe",
    "warm_repl_language",
]
