"""``ember.profiler``: not implemented yet."""

from ._not_yet import missing

profile = missing("ember.profiler.profile")
record_function = missing("ember.profiler.record_function")
