#!/usr/bin/env python3
"""Executes a notebook with nbclient against a run's output, so the example
cannot rot. Fails on any cell's error, and unless a cell drew a figure.
Usage: python3 scripts/run_notebook.py examples/analyze.ipynb OUT_DIR"""
import os
import pathlib
import sys

import nbclient
import nbformat

notebook, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).resolve()
os.environ["LEADFLOW_OUT"] = str(out)
nb = nbformat.read(notebook, as_version=4)
nbclient.NotebookClient(
    nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
).execute()
images = [
    o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})
]
assert images, f"{notebook}: no cell drew a figure"
print(f"{notebook}: {sum(c.cell_type == 'code' for c in nb.cells)} cells ran, {len(images)} figure(s) drawn")
