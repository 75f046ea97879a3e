"""``ember.export``: not implemented yet (a saved program needs the tracing compiler)."""

from ._not_yet import missing

export = missing("ember.export.export", " (exporting a program needs the tracing compiler)")
save = missing("ember.export.save")
load = missing("ember.export.load")
