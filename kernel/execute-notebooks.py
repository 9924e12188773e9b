"""Executes notebooks headless with the llama4-ts kernel and fails on any cell error.

    .venv/bin/python kernel/execute-notebooks.py                 # every notebooks/*.ipynb
    .venv/bin/python kernel/execute-notebooks.py a.ipynb dir/    # these notebooks / folders
    options: --kernel NAME (default llama4-ts) --timeout S (per cell, default 600)
             --write (save outputs into the notebooks) --output-dir DIR (save executed copies there)
             --json FILE (write a summary: [{"path", "ok", "seconds", "cells", "error"}])

Each notebook runs in a fresh kernel whose working directory is the notebook's folder, so paths in
a notebook are relative to it, as in JupyterLab. A cell tagged "raises-exception" may fail (it
demonstrates an error); any other failing cell fails the notebook. Exit status 1 if any failed.
"""

import argparse
import json
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def collect(paths):
    out = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(
                os.path.join(p, f)
                for f in sorted(os.listdir(p))
                if f.endswith(".ipynb") and not f.startswith(".")
            )
        elif p.endswith(".ipynb"):
            out.append(p)
        else:
            raise SystemExit(f"not a notebook or folder: {p}")
    return out


def run_one(path, kernel, timeout):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=timeout,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
    )
    start = time.monotonic()
    error = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        error = str(e)
    cells = sum(1 for c in nb.cells if c.cell_type == "code")
    return nb, {"path": path, "ok": error is None, "seconds": round(time.monotonic() - start, 2), "cells": cells, "error": error}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--kernel", default="llama4-ts")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--output-dir")
    ap.add_argument("--json")
    args = ap.parse_args()

    notebooks = collect(args.paths or [os.path.join(ROOT, "notebooks")])
    results = []
    for path in notebooks:
        nb, result = run_one(path, args.kernel, args.timeout)
        results.append(result)
        rel = os.path.relpath(path)
        print(f"{'PASS' if result['ok'] else 'FAIL'} {rel} ({result['cells']} code cells, {result['seconds']}s)", flush=True)
        if not result["ok"]:
            print(result["error"], file=sys.stderr, flush=True)
        if args.write:
            nbformat.write(nb, path)
        if args.output_dir:
            os.makedirs(args.output_dir, exist_ok=True)
            nbformat.write(nb, os.path.join(args.output_dir, os.path.basename(path)))
    failed = sum(1 for r in results if not r["ok"])
    print(f"{len(results) - failed} notebooks passed, {failed} failed", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
