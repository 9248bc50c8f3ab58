"""Peak memory of a chapter's kernel: run every code cell of each notebook
given in a fresh ipykernel and print the kernel process's VmHWM/VmRSS (Linux).

    PYTHONPATH=. python tools/kernel_memory.py notebooks/03_*.ipynb

The Binder budget (issue 10): one chapter under 300 MB, the whole book open
(every chapter's kernel plus the server) under 2 GB.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from jupyter_client.manager import start_new_kernel


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def measure(path: str) -> tuple[int, int]:
    nb = nbformat.read(path, as_version=4)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(Path(path).parent))
    try:
        pid = km.provisioner.process.pid
        for cell in nb.cells:
            if cell.cell_type == "code":
                kc.execute_interactive(cell.source, timeout=600, output_hook=lambda msg: None)
        return status_kb(pid, "VmHWM"), status_kb(pid, "VmRSS")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    total = 0
    for path in sys.argv[1:]:
        hwm, rss = measure(path)
        total += hwm
        print(f"{Path(path).name}: peak {hwm / 1024:.0f} MB, after Run All {rss / 1024:.0f} MB")
    print(f"sum of peaks: {total / 1024:.0f} MB")
