"""Build the JupyterLite site of the book (``make lite``): build/lite/.

Everything the browser loads is served from the build, so the site works from
127.0.0.1 with no network; the build itself reaches only the package registries:

- Pyodide's runtime (pyodide.mjs, the .wasm, the standard library) from the npm
  package ``pyodide``, at the version jupyterlite-pyodide-kernel is made for.  The npm
  package has no wheels, so this script writes its own ``pyodide-lock.json`` beside
  it, listing the wheels below, each with its sha256, imports and dependencies.
- Pure-Python wheels from PyPI (``pip download``) for the kernel (IPython, jedi,
  comm), the widgets (ipywidgets, anywidget), plotly and micropip, plus the kernel's
  own wheels (piplite, pyodide-kernel, its ipykernel and widgetsnbextension shims)
  from the installed jupyterlite-pyodide-kernel.  The frontend halves (labextensions)
  come from the same versions, installed in this venv (.venv-lite).
- ksmbook, as a wheel built from this checkout (with its notebooks and recorded
  kernel traces as package data; see hatch_build.py).

Every one of them is preloaded by the kernel (``loadPyodideOptions.packages``), so
``import ksmbook`` works in the first cell.  Pyodide's compiled xxhash is not in the
npm package: ksmbook's xxhash requirement is marked not for Emscripten and
``kernel/ksm/checksum.py`` falls back to its pure-Python XXH64, which
tests/unit/test_checksum_fallback.py checks bit for bit against xxhash.

The chapters (``ksmbook.data.book_files``: no redirect stubs) are the site's files.

Run with the lite venv's Python (it has jupyterlite-core and the labextensions):
    .venv-lite/bin/python tools/build_lite.py [--out build/lite]
"""
from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ksmbook.data import book_files  # noqa: E402  (ksmbook/data imports only pathlib)

#: what the kernel itself needs, besides ksmbook and the packages the book imports
KERNEL_SHIMS = ("piplite", "pyodide-kernel", "ipykernel", "widgetsnbextension")
#: the Python packages the book imports in the browser (their versions are those of
#: this venv, whose labextensions are the matching frontends)
#: (nbformat: plotly's MIME renderer refuses to show a figure without it)
BOOK_PACKAGES = ("ipywidgets", "anywidget", "plotly", "nbformat")
#: jsonschema 4.18+ needs rpds-py, a compiled (Rust) wheel that only Pyodide's own
#: distribution has; 4.17 (nbformat asks for >=2.6) is pure Python with pyrsistent
PURE_PINS = ("jsonschema>=4.17,<4.18",)
KERNEL_PACKAGES = ("ipython", "jedi", "comm")
#: Pyodide's own core files, copied from the npm package (the rest is TypeScript/docs)
PYODIDE_CORE = ("pyodide.mjs", "pyodide.js", "pyodide.asm.mjs", "pyodide.asm.wasm",
                "python_stdlib.zip", "package.json")
PLUGIN = "@jupyterlite/pyodide-kernel-extension:kernel"


def log(msg: str) -> None:
    print(f"[lite] {msg}", flush=True)


def run(*argv, **kw) -> None:
    log(" ".join(str(a) for a in argv))
    subprocess.run([str(a) for a in argv], check=True, **kw)


def kernel_dist() -> tuple[str, str, Path]:
    """(pyodide version, Python version, folder of the kernel's shim wheels)."""
    from jupyterlite_pyodide_kernel import constants
    share = Path(sys.prefix) / "share/jupyter/labextensions/@jupyterlite/pyodide-kernel-extension"
    pypi = share / "static" / "pypi"
    if not (pypi / "all.json").is_file():
        raise SystemExit(f"no {pypi}/all.json: is jupyterlite-pyodide-kernel installed in {sys.prefix}?")
    return constants.PYODIDE_VERSION, constants.PYODIDE_PYTHON_VERSION, pypi


def fetch_pyodide(version: str, work: Path) -> Path:
    """The npm package pyodide@version, unpacked: work/npm/package."""
    npm_dir = work / "npm"
    pkg = npm_dir / "package"
    if (pkg / "package.json").is_file() and \
            json.loads((pkg / "package.json").read_text())["version"] == version:
        return pkg
    if not shutil.which("npm"):
        raise SystemExit("npm is needed to fetch Pyodide (the npm package 'pyodide'): "
                         "apt-get install npm")
    shutil.rmtree(npm_dir, ignore_errors=True)
    npm_dir.mkdir(parents=True)
    run("npm", "pack", "--silent", f"pyodide@{version}", cwd=npm_dir, stdout=subprocess.DEVNULL)
    (tgz,) = npm_dir.glob("pyodide-*.tgz")
    with tarfile.open(tgz) as t:
        t.extractall(npm_dir, filter="data")
    tgz.unlink()
    return pkg


def build_ksmbook_wheel(wheels: Path) -> Path:
    for old in wheels.glob("ksmbook-*.whl"):
        old.unlink()
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, REPO)
    (whl,) = wheels.glob("ksmbook-*.whl")
    return whl


def download_wheels(wheels: Path, py: str, shims: Path, cache: Path, venv_digest: str) -> None:
    """Pure wheels for Pyodide's Python from PyPI; the kernel's shims from its package.

    The PyPI wheels are kept in ``cache`` with ``venv_digest`` (this venv pins their
    versions): a rebuild after a change of ksmbook or a chapter downloads nothing."""
    shim_files = []
    for name in KERNEL_SHIMS:
        found = sorted(shims.glob(f"{name.replace('-', '_')}-*-py3-none-any.whl"),
                       key=lambda p: [int(x) if x.isdigit() else x
                                      for x in re.split(r"[.-]", p.name)])
        if not found:
            raise SystemExit(f"no {name} wheel in {shims}")
        shim_files.append(found[-1])          # widgetsnbextension: the 4.x shim
    for f in shim_files:
        shutil.copy2(f, wheels / f.name)
    stamp = cache / "venv-digest"
    if not (stamp.is_file() and stamp.read_text() == venv_digest + "\n"):
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        pins = [f"{n}=={metadata.version(n)}" for n in BOOK_PACKAGES]
        # ipykernel is only the kernel's shim: left out of the resolve, or pip would
        # take the real ipykernel (and tornado, pyzmq) from PyPI
        shim_pins = [f"{n}=={f.name.split('-')[1]}" for n, f in zip(KERNEL_SHIMS, shim_files)
                     if n != "ipykernel"]
        run(sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
            "--platform", "any", "--implementation", "py", "--abi", "none",
            "--python-version", py, "--find-links", shims, "-d", cache,
            *KERNEL_PACKAGES, *pins, *shim_pins, *PURE_PINS, "micropip")
        stamp.write_text(venv_digest + "\n")
    else:
        log(f"PyPI wheels from {cache} (same venv)")
    shim_names = {f.name for f in shim_files}
    for f in cache.glob("*.whl"):
        if f.name not in shim_names:
            shutil.copy2(f, wheels / f.name)


EMSCRIPTEN = {"sys_platform": "emscripten", "platform_system": "Emscripten",
              "os_name": "posix", "platform_machine": "wasm32",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def wheel_entry(whl: Path, py_full: str) -> dict:
    """One pyodide-lock.json package entry for a pure wheel."""
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
    env = dict(EMSCRIPTEN, python_version=".".join(py_full.split(".")[:2]),
               python_full_version=py_full, extra="")
    depends = []
    for spec in meta.get_all("Requires-Dist") or []:
        req = Requirement(spec)
        if req.marker is None or Marker(str(req.marker)).evaluate(env):
            depends.append(canonicalize_name(req.name))
    imports = set()
    for n in names:
        top = n.split("/", 1)[0]
        if top.endswith((".dist-info", ".data")) or top == "__pycache__":
            continue
        if "/" in n:
            imports.add(top)
        elif top.endswith(".py"):
            imports.add(top[:-3])
    return {"name": canonicalize_name(meta["Name"]), "version": meta["Version"],
            "file_name": whl.name, "install_dir": "site", "package_type": "package",
            "sha256": hashlib.sha256(whl.read_bytes()).hexdigest(),
            "imports": sorted(imports), "depends": sorted(set(depends)),
            "unvendored_tests": False}


def write_pyodide(pkg: Path, wheels: Path, dest: Path) -> list[str]:
    """dest/: Pyodide's core files, every wheel and a lock listing exactly those wheels."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in PYODIDE_CORE:
        shutil.copy2(pkg / name, dest / name)
    upstream = json.loads((pkg / "pyodide-lock.json").read_text())
    packages = {}
    for whl in sorted(wheels.glob("*.whl")):
        entry = wheel_entry(whl, upstream["info"]["python"])
        if entry["name"] in packages:
            raise SystemExit(f"two wheels for {entry['name']}: {whl.name}, "
                             f"{packages[entry['name']]['file_name']}")
        packages[entry["name"]] = entry
        shutil.copy2(whl, dest / whl.name)
    missing = {(p["name"], d) for p in packages.values() for d in p["depends"]
               if d not in packages}
    if missing:
        raise SystemExit(f"wheels missing for these dependencies (package, needs): {sorted(missing)}")
    lock = {"info": upstream["info"], "packages": packages}
    (dest / "pyodide-lock.json").write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
    return sorted(packages)


def write_contents(contents: Path) -> list[str]:
    """The chapters as the site's files: the .ipynb of every chapter (jupytext's .md
    twins would open as plain text in JupyterLite, so they stay out)."""
    shutil.rmtree(contents, ignore_errors=True)
    contents.mkdir(parents=True)
    names = []
    for f in book_files(REPO / "notebooks"):
        if f.suffix == ".ipynb":
            shutil.copy2(f, contents / f.name)
            names.append(f.name)
    return names


def write_config(lite_dir: Path, packages: list[str]) -> None:
    # preloaded in this order's dependency closure; piplite and micropip first (the
    # kernel then skips installing them), never the PyPI fallback (offline)
    preload = ["micropip", "piplite", "ipykernel", "comm", "pyodide-kernel", "jedi", "ipython",
               *BOOK_PACKAGES, "ksmbook"]
    assert set(preload) <= set(packages), set(preload) - set(packages)
    config = {
        "jupyter-lite-schema-version": 0,
        "jupyter-config-data": {
            "appName": "ksmbook",
            # window.jupyterapp, as `jupyter lab --LabApp.expose_app_in_browser`:
            # tests/browser/test_lite.py drives the notebook through it
            "exposeAppInBrowser": True,
            "litePluginSettings": {
                PLUGIN: {"disablePyPIFallback": True,
                         "loadPyodideOptions": {"packages": preload}},
            },
        },
    }
    (lite_dir / "jupyter-lite.json").write_text(json.dumps(config, indent=2) + "\n")
    # no news feed, no update check (both would go to the network); every cell
    # rendered, as tools/labshot.py does for JupyterLab (a widget view scrolled out of a
    # windowed notebook is detached, and issue 8 saw figures come up blank there)
    overrides = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                                  "checkForUpdates": False},
                 "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}}
    (lite_dir / "overrides.json").write_text(json.dumps(overrides, indent=2) + "\n")


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _tree_files(root: Path):
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            yield p


def inputs_digest() -> dict:
    """What the site is built from, as digests: the checkout's files that go into it
    (ksmbook, its traces, the chapters, this script, pyproject.toml, hatch_build.py) and
    the lite venv's distributions (the labextensions and the pinned wheel versions).
    Equal digests mean an equal site, so ``--if-changed`` keeps the old one."""
    def digest(paths) -> str:
        h = hashlib.sha256()
        for f in paths:
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
        return h.hexdigest()[:16]
    sources = [Path(__file__).resolve(), REPO / "pyproject.toml", REPO / "hatch_build.py",
               *_tree_files(REPO / "ksmbook"), *_tree_files(REPO / "tests" / "data" / "kernel_traces")]
    venv = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    return {"sources": digest(sources), "chapters": digest(book_files(REPO / "notebooks")),
            "venv": hashlib.sha256("\n".join(venv).encode()).hexdigest()[:16]}


def up_to_date(out: Path, inputs: dict) -> bool:
    stamp = out / "ksmbook-lite.json"
    if not (stamp.is_file() and (out / "index.html").is_file()):
        return False
    return json.loads(stamp.read_text()).get("inputs") == inputs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "build" / "lite")
    ap.add_argument("--work", type=Path, default=REPO / "build" / "lite-work")
    ap.add_argument("--if-changed", action="store_true",
                    help="keep the site in --out if it was built from the same inputs "
                         "(the checkout's files and this venv: see inputs_digest)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    out, work = args.out.resolve(), args.work.resolve()
    inputs = inputs_digest()
    if args.if_changed and up_to_date(out, inputs):
        log(f"JupyterLite site: {out}/index.html is up to date (inputs {inputs}); not rebuilt")
        return 0
    version, py, shims = kernel_dist()
    log(f"Pyodide {version} (Python {py}), kernel shims from {shims}")
    pkg = fetch_pyodide(version, work)
    wheels = work / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    ksm = build_ksmbook_wheel(wheels)
    log(f"built {ksm.name} ({ksm.stat().st_size / 1e3:.0f} kB)")
    # the PyPI wheels depend only on this venv's versions and this script's lists
    this = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    download_wheels(wheels, py, shims, work / "pypi", f"{inputs['venv']}-{this}")
    lite_dir = work / "lite-dir"
    shutil.rmtree(lite_dir, ignore_errors=True)
    lite_dir.mkdir(parents=True)
    packages = write_pyodide(pkg, wheels, lite_dir / "static" / "pyodide")
    log(f"pyodide-lock.json: {len(packages)} wheels: {', '.join(packages)}")
    chapters = write_contents(work / "contents")
    write_config(lite_dir, packages)
    shutil.rmtree(out, ignore_errors=True)
    run(Path(sys.executable).parent / "jupyter", "lite", "build", "--no-sourcemaps",
        "--lite-dir", lite_dir, "--contents", work / "contents", "--output-dir", out,
        cwd=lite_dir, env=dict(os.environ, JUPYTERLITE_NO_LIBARCHIVE="1"))
    # jupyter lite build keeps its doit database beside the output: not part of the site
    for junk in out.parent.glob(f".{out.name}*.doit*"):
        junk.unlink()
    summary = {"site_mb": round(du_mb(out), 1), "pyodide_mb": round(du_mb(out / "static/pyodide"), 1),
               "notebooks": len(chapters), "wheels": len(packages),
               "seconds": round(time.monotonic() - t0, 1), "inputs": inputs}
    (out / "ksmbook-lite.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"JupyterLite site: {out}/index.html ({summary['site_mb']} MB, of which Pyodide and "
        f"wheels {summary['pyodide_mb']} MB; {len(chapters)} notebooks; {summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
