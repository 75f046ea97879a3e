"""``ember.jit``: not implemented yet (tracing needs the compiler's graph capture)."""

from ._not_yet import missing

trace = missing("ember.jit.trace")
script = missing("ember.jit.script", " (ember will trace, never script, Python code)")
save = missing("ember.jit.save")
load = missing("ember.jit.load")
