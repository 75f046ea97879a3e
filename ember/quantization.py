"""``ember.quantization``: not implemented yet."""

from ._not_yet import missing

quantize_dynamic = missing("ember.quantization.quantize_dynamic")
prepare = missing("ember.quantization.prepare")
convert = missing("ember.quantization.convert")
