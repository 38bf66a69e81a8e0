from codeapi.languages.spec import LanguageSpec, SourceFile, ToolCalling
from codeapi.languages.table import LANGUAGES, TOOL_CALLING_LANGUAGES, get_language, get_tool_calling

__all__ = [
    "LANGUAGES",
    "TOOL_CALLING_LANGUAGES",
    "LanguageSpec",
    "SourceFile",
    "ToolCalling",
    "get_language",
    "get_tool_calling",
]
