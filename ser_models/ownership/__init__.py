"""Delete only what we made, and write only where we may: every writer claims its output here, and every delete
of the platform goes through here.

- :mod:`~ser_models.ownership.claims`: the output marker, claiming and adopting a folder or a file, the records of
  what the platform made in it, and the deletes of exactly those;
- :mod:`~ser_models.ownership.recognise`: how a folder an earlier version made is recognised by its content
  before it is adopted;
- :mod:`~ser_models.ownership.overlap`: an output that is one of its job's inputs, or lies inside or around one, is
  refused.

docs/safety.md tells the whole story.
"""

from ser_models.ownership.claims import (
    KINDS,
    MARKER_NAME,
    assert_claimed,
    check_apart,
    check_claim,
    check_output,
    claim,
    claim_file,
    claim_output,
    clear,
    deferred_claim,
    discard_staging,
    entries,
    file_sha256,
    make_staging,
    open_output,
    read_marker,
    recognise_run,
    record,
    recorded,
    remove,
    remove_if,
    replace_files,
)
from ser_models.ownership.recognise import parquet_with, recognise_csv, recognise_files

__all__ = ["KINDS", "MARKER_NAME", "assert_claimed", "check_apart", "check_claim", "check_output", "claim",
           "claim_file", "claim_output", "clear", "deferred_claim", "discard_staging", "entries", "file_sha256",
           "make_staging",
           "open_output", "parquet_with", "read_marker", "recognise_csv", "recognise_files", "recognise_run",
           "record", "recorded", "remove", "remove_if", "replace_files"]

