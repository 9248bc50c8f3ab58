"""Peak memory of a chapter's kernel: run every code cell of each notebook
given in a fresh ipykernel and print the kernel process's VmHWM/VmRSS (Linux),
and the bytes the kernel sent the browser while doing it (iopub messages: the
widgets' comm_open/comm_msg state, plotly's FigureWidget bundle inside, and the
cells' outputs; JSON text plus binary buffers).

    PYTHONPATH=. python tools/kernel_memory.py notebooks/03_*.ipynb

The Binder budget (issue 10): one chapter under 300 MB, the whole book open
(every chapter's kernel plus the server) under 2 GB.
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


def measure(path: str) -> tuple[int, int, Counter]:
    nb = nbformat.read(path, as_version=4)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(Path(path).parent))
    sent: Counter = Counter()

    def count(msg):
        sent[msg["msg_type"]] += message_bytes(msg)
    try:
        pid = km.provisioner.process.pid
        for cell in nb.cells:
            if cell.cell_type == "code":
                kc.execute_interactive(cell.source, timeout=600, output_hook=count)
        return status_kb(pid, "VmHWM"), status_kb(pid, "VmRSS"), sent
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    total = 0
    for path in sys.argv[1:]:
        hwm, rss, sent = measure(path)
        total += hwm
        comm = sent["comm_open"] + sent["comm_msg"]
        other = sum(sent.values()) - comm
        print(f"{Path(path).name}: peak {hwm / 1024:.0f} MB, after Run All {rss / 1024:.0f} MB; "
              f"sent {comm / 1e6:.1f} MB of widget state and {other / 1e3:.0f} kB of outputs",
              flush=True)
    print(f"sum of peaks: {total / 1024:.0f} MB")
