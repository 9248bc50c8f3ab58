"""ksmbook.uapi is the one home of the ABI names, and nothing else redefines them."""
import ast
import pathlib

import ksmbook
from ksmbook import uapi
from ksmbook.kernel import errors, mm
from ksmbook.oracle import live, scenario

ROOT = pathlib.Path(ksmbook.__file__).parent


def test_uapi_imports_nothing():
    tree = ast.parse((ROOT / "uapi.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in imports] == ["__future__"]
    namespace: dict = {}
    exec(compile(tree, "uapi.py", "exec"), namespace)      # runs alone, outside the package
    assert namespace["KSM_SYSFS"] == "/sys/kernel/mm/ksm"


def test_the_sysfs_path_is_written_once():
    hits = [p for p in ROOT.rglob("*.py")
            if '"/sys/kernel/mm/ksm"' in p.read_text() and p.name != "uapi.py"]
    assert hits == []


def test_one_home_for_constants_and_segfault():
    assert mm.MADV_MERGEABLE is uapi.MADV_MERGEABLE and ksmbook.PR_SET_MEMORY_MERGE == 67
    assert live.MADV == uapi.MADV_BY_NAME and live.PROT["rw"] == uapi.PROT_READ | uapi.PROT_WRITE
    assert live.SegmentationFault is errors.SegmentationFault is ksmbook.SegmentationFault
    assert scenario.error_name(errors.SegmentationFault(0, "write", "test")) == "SIGSEGV"
    assert scenario.WRITABLE_KNOBS == uapi.KSM_TUNABLES
    assert set(live.DEFAULT_TUNABLES) == set(uapi.KSM_TUNABLES) - set(live.OWNED_KNOBS)


def test_simulator_boots_with_the_uapi_defaults():
    m = ksmbook.Machine()
    for name, value in uapi.TUNABLE_DEFAULTS.items():
        text = m.sysfs.read(f"{uapi.KSM_SYSFS}/{name}").strip()
        assert text == value or f"[{value}]" in text, (name, text)
    assert set(uapi.KSM_COUNTERS) <= set(m.sysfs.listdir())


def test_kernel_double_underscore_names_are_callable():
    m = ksmbook.Machine()
    for name in ("__ksm_enter", "__stable_node_chain", "__stable_node_dup_del"):
        assert callable(getattr(m.ksm, name)), name
    assert callable(m.ksm.remove_rmap_item_from_tree)
