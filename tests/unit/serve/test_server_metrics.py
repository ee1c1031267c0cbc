"""Server metrics: labelled children are kept and record into the families /metrics exports."""

from __future__ import annotations

from prometheus_client import generate_latest

from distilkit.serve.metrics import ServerMetrics


def test_a_kept_child_is_the_familys_labelled_child_and_records_into_the_export():
    m = ServerMetrics()
    child = m.child(m.requests, "/models/{name}", "200")
    assert child is m.child(m.requests, "/models/{name}", "200")
    assert child is m.requests.labels("/models/{name}", "200")
    assert m.child(m.requests, "/models/{name}", "422") is not child  # other label values, other child
    child.inc()
    m.child(m.stage_seconds, "mlm", "decode").observe(0.002)
    text = generate_latest(m.registry).decode()
    assert 'distilkit_requests_total{route="/models/{name}",status="200"} 1.0' in text
    assert 'distilkit_stage_seconds_count{model="mlm",stage="decode"} 1.0' in text
