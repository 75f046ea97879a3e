"""The issue's accuracy claims, checked on small data with the benchmark's own functions
(benchmarks/quantization_flows.py prints the full-size figures)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))

from benchmarks.quantization_flows import (dynamic_int8_lstm, static_int8_cnn,  # noqa: E402
                                           train_char_lstm, train_demo_cnn)

pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min")


def test_static_int8_demo_cnn_size_and_accuracy():
    model, xte, yte, xcal = train_demo_cnn(train_size=3000, test_size=1000, epochs=2)
    r = static_int8_cnn(model, xte, yte, xcal[:256])
    assert r["fp32_acc"] > 0.6  # a trained model, so that the accuracy claim means something
    assert r["int8_bytes"] <= 0.3 * r["fp32_bytes"]
    assert abs(r["int8_acc"] - r["fp32_acc"]) <= 0.01


def test_dynamic_int8_lstm_lm_perplexity():
    model, data, vocab = train_char_lstm(steps=40, hidden=64, block=32, batch=16)
    r = dynamic_int8_lstm(model, data, vocab)
    assert type(r["model"].lstm).__module__.startswith("ember.ao.nn.quantized")
    assert abs(r["int8_ppl"] / r["fp32_ppl"] - 1) < 0.05
    assert r["int8_bytes"] < 0.5 * r["fp32_bytes"]
