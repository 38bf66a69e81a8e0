"""The language table's shared facts: the one warm REPL language, Go's build cache, the sandbox probe."""

from __future__ import annotations

from codeapi.languages import (
    DEFAULT_TOOL_CALLING_LANGUAGE,
    LANGUAGES,
    TOOL_CALLING_LANGUAGES,
    build_cache_language,
    sandbox_probe,
    warm_repl_language,
)


def test_one_language_is_served_warm_from_its_own_runtime() -> None:
    spec, repl = warm_repl_language()
    assert [other.id for other in LANGUAGES if other.repl] == [spec.id]
    assert repl.environment in {mount.relative_src for mount in spec.mounts}
    assert repl.interpreter.startswith(repl.environment + "/")
    assert repl.mpl_seed in spec.home_seed  # runs seed their home from the cache the zygote reads


def test_the_build_cache_is_one_of_its_languages_mounts() -> None:
    spec, cache = build_cache_language()
    assert cache.mount in spec.mounts and cache.sources in spec.mounts
    assert cache.fill_argv[0].startswith(cache.sources.dst + "/")


def test_the_probe_needs_only_the_system_view_and_the_default_language_calls_tools() -> None:
    probe, code = sandbox_probe()
    assert probe.system_only and code
    assert DEFAULT_TOOL_CALLING_LANGUAGE in TOOL_CALLING_LANGUAGES
