from ser_models.progress import progress_line


def test_progress_line_share_rate_and_time_left():
    assert progress_line("feature cache", 1024, 2880, 29.1, "clips") == \
        "feature cache: 1,024/2,880 clips (36%), 35.2 clips/s, 53s left"
    assert progress_line("runs", 10, 10, 4.0, "runs") == "runs: 10/10 runs (100%), 2.5 runs/s, done"
    assert progress_line("runs", 1, 100, 90.0, "runs").endswith("2h28m left")
    assert progress_line("scan", 5, None, 2.0, "files") == "scan: 5 files, 2.5 files/s"  # total unknown
    assert progress_line("scan", 0, 10, 0.0, "files") == "scan: 0/10 files (0%), 0.0 files/s"  # nothing yet
