"""The release gate reads audit/summary.json: closed when missing, failed or broken."""

from __future__ import annotations


from cspine import atomic
from cspine.gate import read_gate


def _summary(run, **kw):
    s = {"passed": True, "exclude_flagged": False, "n_samples": 3, "n_flagged": 0, "excluded": [],
         "methods_run": ["pixel"]} | kw
    atomic.write_json(run.audit / "summary.json", s)


def test_gate_states(fake_run):
    g = read_gate(fake_run)
    assert not g.passed and "cspine audit" in g.reason
    _summary(fake_run)
    assert read_gate(fake_run).passed and read_gate(fake_run.root).excluded == set()
    _summary(fake_run, passed=False, n_flagged=2)
    g = read_gate(fake_run)
    assert not g.passed and "2 of 3" in g.reason and "--exclude-flagged" in g.reason
    _summary(fake_run, passed=True, n_flagged=1, exclude_flagged=True, excluded=["final-000001"])
    g = read_gate(fake_run)
    assert g.passed and g.excluded == {"final-000001"}
    (fake_run.audit / "summary.json").write_text("{not json")
    assert not read_gate(fake_run).passed
