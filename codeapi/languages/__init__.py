from codeapi.languages.spec import LanguageSpec, SourceFile
from codeapi.languages.table import LANGUAGES, get_language

__all__ = ["LANGUAGES", "LanguageSpec", "SourceFile", "get_language"]
