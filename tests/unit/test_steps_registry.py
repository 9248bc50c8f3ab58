"""Every scenario step is declared once (``@step``) and runs in both runners.

The runners build their dispatch tables from ``STEP_TYPES`` at import time;
these tests say the same thing in words a failing CI log can show, and check
the one layer that import cannot: the live runner's worker commands exist in
the C worker's dispatch().
"""
import inspect
import re
from importlib import resources

import pytest

from ksmbook.oracle import live, scenario
from ksmbook.oracle.scenario import STEP_TYPES, Step, _Checker, _SimRunner, handlers, step

OPS = sorted(STEP_TYPES)


def test_every_step_class_is_declared():
    declared = set(STEP_TYPES.values())
    subclasses = {c for c in vars(scenario).values()
                  if isinstance(c, type) and issubclass(c, Step) and c is not Step}
    # a class with no op is a shared base (RangeStep), never a step of its own:
    # each must be the base of a declared step
    bases = {c for c in subclasses if not c.op}
    assert subclasses - bases == declared
    for base in bases:
        assert any(issubclass(c, base) for c in declared), f"{base.__name__} is the base of no step"
    for op, cls in STEP_TYPES.items():
        assert cls.op == op
        assert getattr(scenario, op) is cls, f"lower-case contract name {op} missing"
        assert op in scenario.__all__ and cls.__name__ in scenario.__all__


@pytest.mark.parametrize("op", OPS)
def test_step_has_a_handler_in_checker_simulator_and_live(op):
    assert callable(getattr(_Checker, "on_" + op))
    assert callable(getattr(_SimRunner, "do_" + op))
    assert callable(getattr(live.LiveRun, "do_" + op))
    assert _SimRunner.DO[op] == "do_" + op and live.LiveRun.DO[op] == "do_" + op


def test_live_worker_commands_exist_in_worker_c():
    src = resources.files("ksmbook.oracle").joinpath("_worker.c").read_text()
    known = set(re.findall(r'strcmp\(c, "(\w+)"\)', src))
    sent = set()
    for op in OPS:
        body = inspect.getsource(getattr(live.LiveRun, "do_" + op))
        sent |= set(re.findall(r'self\.cmd\(s, f?"(\w+)', body))
    assert sent, "found no worker commands: the pattern above no longer matches live.py"
    assert sent <= known, f"worker commands with no case in _worker.c: {sent - known}"


def test_a_missing_handler_fails_loudly():
    class Partial:
        def do_spawn(self, s):
            pass
    with pytest.raises(TypeError, match="no do_<op> handler"):
        handlers(Partial, "do_")


def test_an_op_cannot_be_declared_twice():
    with pytest.raises(TypeError):
        step(type(STEP_TYPES["fill"]).__new__(type, "Fill2", (STEP_TYPES["fill"],), {}))


def test_builtins_load_without_importing_workloads():
    import subprocess
    import sys
    code = ("import sys; from ksmbook.oracle.scenario import SCENARIOS;"
            "assert 'ksmbook.oracle.workloads' not in sys.modules;"
            "n = len(SCENARIOS); assert n > 10, n;"
            "assert 'ksmbook.oracle.workloads' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
