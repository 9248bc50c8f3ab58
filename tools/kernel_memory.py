"""Peak memory of a chapter's kernel: run every code cell of each notebook
given in a fresh ipykernel and print the kernel process's VmHWM/VmRSS (Linux),
and the bytes the kernel sent the browser while doing it (iopub messages: the
widgets' comm_open/comm_msg state, plotly's FigureWidget bundle inside, and the
cells' outputs; JSON text plus binary buffers).

    PYTHONPATH=. python tools/kernel_memory.py notebooks/03_*.ipynb
    PYTHONPATH=. python tools/kernel_memory.py --together --server notebooks/[01]*_*.ipynb

The Binder budget (issue 10): one chapter under 300 MB, the whole book open
(every chapter's kernel plus the server) under 2 GB.  ``--together`` keeps every
kernel alive until the last notebook has run (the whole book open, as in JupyterLab
with every chapter's tab run) and prints their summed RSS and PSS (PSS shares the
pages the kernels have in common, such as the interpreter and numpy, between them);
``--server`` also starts a JupyterLab server (tools/labshot.py) and adds its RSS.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import nbformat
from jupyter_client.manager import start_new_kernel


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def message_bytes(msg: dict) -> int:
    """A message's content as JSON text plus its binary buffers."""
    return (len(json.dumps(msg["content"], default=str))
            + sum(len(memoryview(b).cast("B")) for b in msg.get("buffers") or ()))


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def measure(path: str, kernels: list | None = None) -> tuple[int, int, Counter]:
    """Run `path`'s code cells in a fresh kernel: (VmHWM, VmRSS) in kB and the bytes
    sent by message type.  With `kernels`, the kernel is left running and appended
    to it as (manager, client, pid); the caller shuts it down."""
    nb = nbformat.read(path, as_version=4)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(Path(path).parent))
    sent: Counter = Counter()

    def count(msg):
        sent[msg["msg_type"]] += message_bytes(msg)
    pid = km.provisioner.process.pid
    try:
        for cell in nb.cells:
            if cell.cell_type == "code":
                kc.execute_interactive(cell.source, timeout=600, output_hook=count)
        return status_kb(pid, "VmHWM"), status_kb(pid, "VmRSS"), sent
    finally:
        if kernels is None:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        else:
            kernels.append((km, kc, pid))


def server_rss_kb() -> int:
    """RSS of a JupyterLab server (and its children) rooted at notebooks/, idle."""
    import labshot
    with labshot.jupyter_lab(Path(__file__).resolve().parents[1] / "notebooks") as lab:
        return status_kb(lab.process.pid, "VmRSS")


if __name__ == "__main__":
    args = sys.argv[1:]
    together = "--together" in args
    server = "--server" in args
    paths = [a for a in args if not a.startswith("--")]
    kernels: list | None = [] if together else None
    total = 0
    for path in paths:
        hwm, rss, sent = measure(path, kernels)
        total += hwm
        comm = sent["comm_open"] + sent["comm_msg"]
        other = sum(sent.values()) - comm
        print(f"{Path(path).name}: peak {hwm / 1024:.0f} MB, after Run All {rss / 1024:.0f} MB; "
              f"sent {comm / 1e6:.1f} MB of widget state and {other / 1e3:.0f} kB of outputs",
              flush=True)
    print(f"sum of peaks: {total / 1024:.0f} MB")
    if together:
        try:
            rss = sum(status_kb(pid, "VmRSS") for _, _, pid in kernels)
            pss = sum(pss_kb(pid) for _, _, pid in kernels)
            print(f"{len(kernels)} kernels open together: RSS {rss / 1024:.0f} MB, "
                  f"PSS {pss / 1024:.0f} MB", flush=True)
        finally:
            for km, kc, _ in kernels:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
    if server:
        srv = server_rss_kb()
        print(f"JupyterLab server (idle, notebooks/ as its root): RSS {srv / 1024:.0f} MB")
