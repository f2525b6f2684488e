#!/usr/bin/env python3
"""Strip outputs from notebooks before committing them (standard library only).

    python scripts/strip_notebooks.py            # strip notebooks/*.ipynb in place
    python scripts/strip_notebooks.py --check    # exit 1 and name the notebooks that still have outputs
    python scripts/strip_notebooks.py a.ipynb    # only these files

Removed: code cell outputs and execution counts, execution timing metadata, the saved widget state, and the
kernel's language_info details. Everything else (sources, cell ids, markdown, kernelspec) is kept. The file
is written the way nbformat writes it (sorted keys, indent 1), so a clean notebook is left byte-identical.
Executed copies (*.executed.ipynb, made by `make demo`) are skipped.
"""

import argparse
import glob
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELL_METADATA_DROPPED = ("execution", "collapsed", "scrolled", "ExecuteTime")
NOTEBOOK_METADATA_DROPPED = ("widgets",)


def default_paths():
    paths = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))
    return [p for p in paths if not p.endswith(".executed.ipynb")]


def strip(nb):
    """Strip `nb` (a dict from json.load) in place; returns True when something changed."""
    before = json.dumps(nb, sort_keys=True)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        metadata = cell.get("metadata", {})
        for key in CELL_METADATA_DROPPED:
            metadata.pop(key, None)
    metadata = nb.get("metadata", {})
    for key in NOTEBOOK_METADATA_DROPPED:
        metadata.pop(key, None)
    if "language_info" in metadata:
        metadata["language_info"] = {"name": metadata["language_info"].get("name", "python")}
    return json.dumps(nb, sort_keys=True) != before


def serialize(nb):
    return json.dumps(nb, sort_keys=True, indent=1, separators=(",", ": "), ensure_ascii=False) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Change nothing; exit 1 if a notebook has outputs.")
    parser.add_argument("paths", nargs="*", help="Notebooks (default: notebooks/*.ipynb).")
    args = parser.parse_args(argv)
    dirty = []
    for path in args.paths or default_paths():
        if path.endswith(".executed.ipynb"):
            continue
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        nb = json.loads(text)
        changed = strip(nb)
        if changed or serialize(nb) != text:
            dirty.append(path)
            if not args.check:
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(serialize(nb))
    for path in dirty:
        print(("has outputs or is not normalized: " if args.check else "stripped: ") + os.path.relpath(path))
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
