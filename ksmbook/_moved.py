"""Keep moved modules importable under their old names for one release.

The finder answers only for the listed old names.  Its loader imports the new
module and puts that very object in ``sys.modules`` under the old name, so both
names share one module (one ``SCENARIOS`` registry, one class per name), and the
new module's ``__spec__`` is left alone.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new_name: str):
        self.new_name = new_name

    def create_module(self, spec):
        return None                      # a placeholder; exec_module replaces it

    def exec_module(self, module):
        old_name = module.__name__
        warnings.warn(f"{old_name} moved to {self.new_name}; import it from there",
                      DeprecationWarning, stacklevel=2)
        # The import system returns whatever sys.modules holds after exec_module.
        sys.modules[old_name] = importlib.import_module(self.new_name)


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def __init__(self, moves: dict[str, str]):
        self.moves = moves

    def find_spec(self, fullname, path=None, target=None):
        new_name = self.moves.get(fullname)
        if new_name is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader(new_name))


def install_moved_module_aliases(package: str, moves: dict[str, str]) -> None:
    """Make ``package.OLD`` import ``package.NEW`` for each ``OLD: NEW`` in ``moves``."""
    full = {f"{package}.{old}": f"{package}.{new}" for old, new in moves.items()}
    if not any(isinstance(f, _MovedModuleFinder) and f.moves == full for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder(full))
