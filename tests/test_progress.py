"""Long stages show progress: done of total, rate and time left, as whole lines in logs."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from pipeline.progress import LineWriter, progress


def test_progress_in_a_log_is_one_line_per_update(monkeypatch):
    """Not on a terminal (a rule log, a pipe through tee): each update is a full line with
    done/total, time elapsed<left and the rate; no carriage returns."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(progress(range(7), total=7, desc="dock chunk_00000", unit="lig")) == list(range(7))
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.strip().splitlines()
    assert lines[0].startswith("dock chunk_00000:") and "0/7" in lines[0]
    last = lines[-1]
    assert "7/7" in last and "100%" in last
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+(lig/s|s/lig)\]", last), last


def test_line_writer_drops_redraws():
    out = io.StringIO()
    writer = LineWriter(out)
    writer.write("\rstep 1/3")
    writer.write("\rstep 2/3")
    writer.write("\n")
    assert out.getvalue() == "step 1/3\nstep 2/3\n"


def test_every_subcommand_help_has_an_example():
    from pipeline.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 -- argparse keeps them here
    assert {
        "check-config",
        "split",
        "prepare-ligands",
        "dock",
        "featurize",
        "refine",
        "score",
        "train",
        "rank",
        "report",
    } <= set(commands)
    for name, sub in commands.items():
        assert f"example:\n  vscreen {name}" in sub.format_help(), name
    top = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True)
    assert top.returncode == 0 and "vscreen report --run-dir" in top.stdout
