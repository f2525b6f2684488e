"""The magics in terminal IPython, as a user types them: no empty Out[N]: after a cell that printed its
summary, and `%%r_train?` shows the cell magic's usage."""

import re
import subprocess
import sys

SESSION = r'''
import sys
from IPython.terminal.interactiveshell import TerminalInteractiveShell

ip = TerminalInteractiveShell.instance(colors="nocolor")
ip.run_cell("%load_ext sm_r_magic", store_history=True)
ip.run_cell(f'%config RMagic.local_root = "{sys.argv[1]}"', store_history=True)
for cell in ["%%r_train --name t1\ncat('hello\\n')\n", "%r_attach t1", "t1", "%%r_train?", "%%r_processing?",
             "%%r_deploy?"]:
    print(f"### {cell.splitlines()[0]}", flush=True)
    ip.run_cell(cell, store_history=True)
'''


def test_terminal_cells_show_no_empty_out_and_cell_magic_usage(tmp_path, r_available):
    proc = subprocess.run([sys.executable, "-c", SESSION, str(tmp_path / "root")], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    sections = dict(part.split("\n", 1) for part in out.split("### ")[1:])

    train = sections["%%r_train --name t1"]
    assert "hello" in train and "Completed" in train
    assert not re.search(r"^Out\[\d+\]:\s*$", out, re.MULTILINE), train  # the summary was printed: no Out[N]
    assert "Out[" not in train
    assert re.search(r"^Out\[\d+\]: training job t1-\S+ \(local\): Completed", sections["%r_attach t1"], re.MULTILINE)
    assert re.search(r"^Out\[\d+\]: training job t1-", sections["t1"], re.MULTILINE)

    for magic in ("r_train", "r_processing", "r_deploy"):
        usage = sections[f"%%{magic}?"]
        assert f"%%{magic} [" in usage, usage[:400]
        assert not re.search(rf"^\s*%{magic} \[", usage, re.MULTILINE)
