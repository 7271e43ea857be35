"""Quantizer's working memory is bounded: the output plus a fixed working set, whatever the rows.

Measured with tracemalloc (numpy reports its buffers to it) in a fresh
subprocess, on 1M x 16 float32 (64 MB). Before the rows were processed in
chunks, dynamic per-block quantization held 5.5 times the input beside it.
"""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, tracemalloc
    import numpy as np
    from unsup.quantization import Quantizer

    X = np.random.RandomState(0).randn(1_000_000, 16).astype(np.float32)
    q = Quantizer(granularity={granularity!r}, block_size=8, dynamic={dynamic}).fit(X[:1000])
    tracemalloc.start()
    codes, scale, zero_point = q.quantize(X)
    quantize_peak = tracemalloc.get_traced_memory()[1]
    out = codes.nbytes + np.asarray(scale).nbytes + np.asarray(zero_point).nbytes
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    kwargs = {{"scale": scale, "zero_point": zero_point}} if {dynamic} else {{}}
    X_hat = q.inverse_transform(codes, **kwargs)
    inverse_extra = tracemalloc.get_traced_memory()[1] - base - X_hat.nbytes
    print(json.dumps({{"quantize_extra": quantize_peak - out, "inverse_extra": inverse_extra}}))
    """
)

LIMIT = 32 << 20  # the chunks' working set (2 MB of input each) with room to spare; the input is 64 MB


@pytest.mark.parametrize(
    "granularity, dynamic",
    [("per_tensor", True), ("per_block", True), ("per_block", False), ("per_channel", False)],
)
def test_quantize_and_inverse_memory_is_output_plus_a_bounded_working_set(granularity, dynamic):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(granularity=granularity, dynamic=dynamic)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["quantize_extra"] < LIMIT, figures
    assert figures["inverse_extra"] < LIMIT, figures
