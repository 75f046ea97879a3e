import pytest


@pytest.fixture(autouse=True, scope="session")
def _shared_kernel_cache(tmp_path_factory):
    """One compiled-kernel cache per test session (few C compiles, nothing in ~/.cache)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EMBER_CACHE_DIR", str(tmp_path_factory.mktemp("ember-compile-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _fresh_compiler():
    import ember.compiler
    yield
    ember.compiler.reset()
