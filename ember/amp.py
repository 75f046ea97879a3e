"""``ember.amp``: not implemented yet (no autocast; train in float32 or cast explicitly)."""

from ._not_yet import missing

autocast = missing("ember.amp.autocast")
GradScaler = missing("ember.amp.GradScaler")
