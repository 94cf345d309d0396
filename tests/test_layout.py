"""Data walks one way (README, Layout): checked on the imports themselves, so a new
import against the direction fails here instead of waiting for a reader to notice.

    targets → breaker → probe → classify → token → endpoints → report → artifacts/events/Slack
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every module a file imports (top level or inside functions), as absolute names."""
    package = "cxhealth." + ".".join(path.relative_to(ROOT).parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


def _offenders(folder: str, forbidden: tuple[str, ...], skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Files under *folder* (except those whose path starts with one of *skip*) importing a *forbidden* module."""
    out = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name.startswith(skip):
            continue
        bad = sorted(m for m in _imports(path) if m.startswith(forbidden))
        if bad:
            out[name] = bad
    return out


def test_the_import_walker_sees_imports_inside_functions_and_relative_ones():
    """Positive control: the checks below would see an offending import."""
    alerter = _imports(ROOT / "tasks" / "alerts" / "alerter.py")
    assert any(m.startswith("cxhealth.tasks.alerts.") for m in alerter), alerter
    wiring = _imports(ROOT / "tasks" / "alerts" / "run.py")  # imports inside its functions
    assert "cxhealth.tasks.alerts" in wiring and "cxhealth.tasks.breaker" in wiring, wiring


def test_the_lab_imports_nothing_of_production():
    """The lab gives plain values and TOML text; tests build production's objects from them."""
    production = ("cxhealth.tasks", "cxhealth.flows", "cxhealth.cli", "cxhealth.blocks")
    assert _offenders("lab", production) == {}


def test_no_stage_imports_the_alerts_the_flows_or_the_cli():
    """The alerts and the flows read the report; the stages before them never reach forward.
    (tasks/alerting.py is the alerts' own Prefect task.)"""
    skip = ("tasks/alerts/", "tasks/alerting.py")
    assert _offenders("tasks", ("cxhealth.tasks.alerts", "cxhealth.flows", "cxhealth.cli"), skip) == {}
    assert _offenders("tasks/alerts", ("cxhealth.flows", "cxhealth.cli", "cxhealth.tasks.health",
                                       "cxhealth.tasks.checks", "cxhealth.tasks.remedies")) == {}


def test_the_engine_never_imports_prefect():
    assert _offenders("tasks/tls", ("prefect",)) == {}
    assert _offenders("tasks/breaker", ("prefect",)) == {}
