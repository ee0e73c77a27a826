"""The report's per-stage time table, from Snakemake's benchmark files (pipeline.report.timing)."""

from __future__ import annotations

import os

from pipeline.report.timing import stage_times, timing_section

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path, seconds, rss, cpu, end):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    os.utime(path, (end, end))


def test_stage_times_sum_jobs_and_span_the_wall_clock(tmp_path):
    bench = tmp_path / "benchmarks"
    _bench(bench / "dock" / "chunk_00000.tsv", 100.0, 300.5, 95.0, end=1_000.0)  # ran 900-1000
    _bench(bench / "dock" / "chunk_00001.tsv", 80.0, 280.0, 70.0, end=1_050.0)  # ran 970-1050
    _bench(bench / "rank" / "job.tsv", 5.0, "NA", "NA", end=1_100.0)
    _bench(bench / "split_library" / "job.tsv", 1.0, 50.0, 0.5, end=890.0)
    (bench / "refine").mkdir()  # a stage without files is not shown
    (bench / "dock" / "broken.tsv").write_text("")  # an unreadable file is skipped

    table = stage_times(tmp_path)
    assert list(table["stage"]) == ["split_library", "dock", "rank"]  # workflow order
    dock = table.set_index("stage").loc["dock"]
    assert (dock.jobs, dock.job_seconds, dock.wall_seconds, dock.cpu_seconds) == (2, 180.0, 150.0, 165.0)
    assert dock.max_rss_mb == 300.5
    html = timing_section(table)
    assert "3 min 06 s" in html  # 186 s of job time in all
    assert "2 min 30 s" in html and "dock" in html


def test_no_benchmarks_no_section(tmp_path):
    assert stage_times(tmp_path).empty
    assert timing_section(stage_times(tmp_path)) == ""
