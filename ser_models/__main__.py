"""``python -m ser_models JOB ...``: the same as the ``ser-models`` command (:mod:`ser_models.cli.command`)."""

if __name__ == "__main__":
    from ser_models.cli.command import main

    main()
