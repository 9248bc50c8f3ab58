"""Each package of ksmbook explains its part of the system (issue 12), in the style of
mm/ksm.c's "DOC: Overview": what the part is for and how it meets the others."""
import importlib

import pytest

PACKAGES = ("ksmbook.kernel", "ksmbook.kernel.ksm", "ksmbook.oracle", "ksmbook.labs",
            "ksmbook.viz", "ksmbook.widgets", "ksmbook.exercises")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_docstring_is_an_overview(name):
    doc = importlib.import_module(name).__doc__ or ""
    assert "DOC: Overview" in doc or name == "ksmbook.oracle", f"{name} has no DOC: Overview"
    # an overview, not a one-liner: it says how the part relates to the rest of ksmbook
    assert len(doc.split()) >= 80, f"{name}'s docstring is {len(doc.split())} words"
    others = [p.rsplit(".", 1)[1] for p in PACKAGES if p != name and not name.startswith(p)]
    if name.count(".") == 1:        # a top-level part; kernel.ksm relates to mm/ksm.c instead
        assert any(o in doc for o in others), f"{name}'s docstring never names another part"
    else:
        assert "mm/ksm.c" in doc


def test_labs_docstring_names_every_lab():
    import pkgutil
    import ksmbook.labs as labs
    mods = [m.name for m in pkgutil.iter_modules(labs.__path__) if not m.name.startswith("_")]
    missing = [m for m in mods if f"``{m}``" not in labs.__doc__]
    assert not missing, f"ksmbook.labs docstring does not explain {missing}"
