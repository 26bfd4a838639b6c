"""Test tiers: every test is exactly one of ``unit``, ``integration`` or ``browser``.

``unit``
    never imports TensorFlow (``tensorflow``, ``tf_keras``, ``core.models.tfkeras``),
    neither directly nor through training, a session fixture or a test module's imports.
``integration``
    real tiny training, TensorFlow, TFLite/LiteRT, deployment.
``browser``
    a real Chromium driven by Playwright.

``slow`` is independent of the tier and skipped by default (``addopts`` in pytest.ini).

Loaded by ``tests/conftest.py`` (``pytest_plugins``). What it enforces:

* a collected test with no tier marker, or with more than one, stops the session before
  anything runs, naming the tests;
* tests run tier by tier (unit, then integration, then browser; file order kept within
  a tier), so the unit tests run before anything has imported TensorFlow;
* the first import of TensorFlow in the process is recorded with where it happened.
  It is an error when it happened while collecting the test modules (a test module
  importing TensorFlow at the top makes ``-m unit`` import it) or inside a ``unit``
  test (its setup, call or teardown); and a session that selected only unit tests fails
  if TensorFlow was imported at all.
"""

from __future__ import annotations

import sys
import sysconfig
import traceback

import pytest

TIERS = ("unit", "integration", "browser")
TENSORFLOW = ("tensorflow", "tf_keras")


class _FirstTensorFlowImport:
    """A meta-path finder that finds nothing: it only notes where TensorFlow is first imported."""

    def __init__(self) -> None:
        self.phase = "loading the test configuration"  # what the process does: collecting a module, a test
        self.where: str | None = None  # self.phase at the first import
        self.stack = ""
        self.reported = False  # a unit test has failed for it
        if any(name in sys.modules for name in TENSORFLOW):
            self.where = "before the test session started (a plugin, conftest or sitecustomize)"

    def find_spec(self, name, path=None, target=None):
        if self.where is None and name in TENSORFLOW:
            self.where = self.phase
            self.stack = _import_stack()
        return None


def _import_stack() -> str:
    """The frames of the code under test (tests, core, pages, scripts) that led to the import.

    Frames of the standard library, installed packages (pytest, pluggy, ...) and this file are left out.
    """
    skip = {sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    frames = [f for f in traceback.extract_stack()[:-2]
              if not f.filename.startswith("<") and f.filename != __file__
              and not any(f.filename.startswith(path) for path in skip if path)]
    return "".join(traceback.format_list(frames[-8:])) or "  (no frame outside the standard library and packages)\n"


_watch = _FirstTensorFlowImport()
sys.meta_path.insert(0, _watch)


def _tier(item: pytest.Item) -> list[str]:
    return [name for name in TIERS if item.get_closest_marker(name) is not None]


def pytest_configure(config: pytest.Config) -> None:
    if _watch not in sys.meta_path:
        sys.meta_path.insert(0, _watch)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _watch in sys.meta_path:
        sys.meta_path.remove(_watch)


def pytest_collectstart(collector: pytest.Collector) -> None:
    if isinstance(collector, pytest.Module):
        _watch.phase = f"collecting {collector.nodeid}"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything: every collected test is checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    none = [item.nodeid for item in items if not _tier(item)]
    many = [f"{item.nodeid} ({', '.join(_tier(item))})" for item in items if len(_tier(item)) > 1]
    if none or many:
        lines = ["every test needs exactly one tier marker: " + ", ".join(f"@pytest.mark.{t}" for t in TIERS)
                 + " (a whole file: pytestmark = pytest.mark.unit; see tests/tier_guard.py)"]
        if none:
            lines += [f"{len(none)} test(s) without a tier marker:"] + [f"  {n}" for n in none[:20]]
            lines += [f"  ... and {len(none) - 20} more"] if len(none) > 20 else []
        if many:
            lines += [f"{len(many)} test(s) with more than one:"] + [f"  {n}" for n in many[:20]]
        pytest.exit("\n".join(lines), returncode=pytest.ExitCode.USAGE_ERROR)
    _watch.phase = "after collection, before the first test"
    items.sort(key=lambda item: TIERS.index(_tier(item)[0]))  # stable: file order within a tier


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    _watch.phase = item.nodeid
    yield
    _watch.phase = f"after {item.nodeid}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """A unit test fails in the phase (setup, call, teardown) in which it first imported TensorFlow."""
    outcome = yield
    report = outcome.get_result()
    if _watch.where == item.nodeid and not _watch.reported and "unit" in _tier(item):
        _watch.reported = True
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} is marked unit but imported TensorFlow (during its {call.when}: the test, "
                           f"a fixture it uses or code it calls); mark it integration, or keep TensorFlow out of it. "
                           f"The import came from:\n{_watch.stack}")


def _problem(session: pytest.Session) -> str | None:
    if _watch.where is None or _watch.reported:  # not imported, or a unit test has failed for it already
        return None
    if _watch.where.startswith(("collecting ", "before the test session", "loading the test configuration")):
        return (f"TensorFlow was imported {_watch.where}: test modules and conftest must import it inside the tests "
                f"or fixtures that need it, or `pytest -m unit` imports it too. The import came from:\n{_watch.stack}")
    items = getattr(session, "items", None) or []
    if items and all(_tier(item) == ["unit"] for item in items):
        return (f"only unit tests were selected, yet TensorFlow was imported ({_watch.where}). "
                f"The import came from:\n{_watch.stack}")
    return None


_REPORT = pytest.StashKey[tuple]()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    problem = _problem(session)
    if problem and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    items = getattr(session, "items", None) or []
    unit_only = bool(items) and all(_tier(item) == ["unit"] for item in items) and _watch.where is None
    note = f"test tiers: {len(items)} unit test(s) selected; TensorFlow was not imported" if unit_only else None
    session.config.stash[_REPORT] = (problem, note)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    problem, note = config.stash.get(_REPORT, (None, None))
    if problem:
        terminalreporter.section("test tiers", sep="=", red=True, bold=True)
        terminalreporter.write_line("error: " + problem.rstrip())
    elif note:
        terminalreporter.write_line(note)
