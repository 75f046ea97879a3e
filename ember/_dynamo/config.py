"""Compiler settings (``torch._dynamo.config``'s names)."""

cache_size_limit = 8       # captures per compiled function before it runs eagerly
recompile_limit = cache_size_limit
suppress_errors = False
