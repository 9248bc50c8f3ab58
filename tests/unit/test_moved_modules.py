"""Old import paths (ksmbook 0.1's top-level oracle and lab modules) keep working."""
import importlib
import sys
import warnings

import pytest

MOVES = {"scenario": "oracle.scenario", "live": "oracle.live", "workloads": "oracle.workloads",
         "sidebyside": "oracle.sidebyside", "host": "oracle.host", "scenes": "labs.scenes",
         "eras": "labs.eras", "sidechannel": "labs.sidechannel"}


@pytest.mark.parametrize("old,new", sorted(MOVES.items()))
def test_old_name_is_the_new_module(old, new):
    sys.modules.pop(f"ksmbook.{old}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = importlib.import_module(f"ksmbook.{old}")
    assert mod is importlib.import_module(f"ksmbook.{new}")
    assert mod.__name__ == f"ksmbook.{new}"
    assert any(issubclass(w.category, DeprecationWarning) and f"ksmbook.{new}" in str(w.message)
               for w in caught)


def test_from_old_path_import_gives_the_same_objects():
    from ksmbook.scenario import SCENARIOS as old
    from ksmbook.oracle.scenario import SCENARIOS as new
    assert old is new


def test_no_module_left_at_the_old_paths():
    import ksmbook
    from importlib import resources
    top = {p.name for p in resources.files(ksmbook).iterdir()}
    assert not {f"{m}.py" for m in MOVES} & top
    assert "_worker.c" not in top and (resources.files("ksmbook.oracle") / "_worker.c").is_file()


def test_unknown_names_still_fail():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("ksmbook.no_such_module")
