from ser_models.progress import progress_line


def test_progress_line_share_rate_and_time_left():
    assert progress_line("feature cache", 1024, 2880, 29.1, "clips") == \
        "feature cache: 1,024/2,880 clips (36%), 35.2 clips/s, 53s left"
    assert progress_line("runs", 10, 10, 4.0, "runs") == "runs: 10/10 runs (100%), 2.5 runs/s, done"
    assert progress_line("runs", 1, 100, 90.0, "runs").endswith("2h28m left")
    assert progress_line("scan", 5, None, 2.0, "files") == "scan: 5 files, 2.5 files/s"  # total unknown
    assert progress_line("scan", 0, 10, 0.0, "files") == "scan: 0/10 files (0%), 0.0 files/s"  # nothing yet


def test_written_rows_counts_finished_parquet_files_recursively(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ser_models.progress import WrittenRows

    count = WrittenRows(str(tmp_path / "data"))
    assert count() == 0  # the folder does not exist yet
    (tmp_path / "data" / "split=train").mkdir(parents=True)
    pq.write_table(pa.table({"x": list(range(7))}), tmp_path / "data" / "split=train" / "a.parquet")
    (tmp_path / "data" / "b.parquet").write_bytes(b"PAR1 half written")  # no footer yet: not counted
    assert count() == 7
    pq.write_table(pa.table({"x": list(range(5))}), tmp_path / "data" / "b.parquet")
    assert count() == 12


def test_stage_progress_prints_while_running_and_a_last_line(capsys):
    import threading
    import time

    from ser_models.progress import StageProgress

    done, polled = [1], threading.Event()

    def count():
        n = done[0]
        if threading.current_thread().name.startswith("progress:"):
            polled.set()  # the watcher thread asked while the stage ran
        return n

    with StageProgress("decode", 4, "clips", count, every=0.01):
        assert polled.wait(30)
        done[0] = 4
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  decode: 1/4 clips (25%)")
    assert lines[-1].startswith("  decode: 4/4 clips (100%)") and lines[-1].endswith("done")
    with StageProgress("quiet", 1, "clips", lambda: 1, every=0.01, verbose=False):
        time.sleep(0.03)
    assert capsys.readouterr().out == ""
