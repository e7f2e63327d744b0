"""The VAD pass holds one block, never the file: a 2-hour recording stays within the memory of a 10-minute one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ser_models.testing import write_long_recording

# VmHWM (this process's own peak RSS), not ru_maxrss: Linux carries ru_maxrss over from the forking parent
# across exec, so a child of a large test process would report the parent's size.
MEASURE = r"""
import json, sys
from ser_models.segment import SileroVAD, vad_pass
def peak_kb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
vad = SileroVAD.from_wheel()
vad_pass(sys.argv[1], vad)  # warm-up on a short file: allocator pools and kernels exist before the baseline
out = []
for path in sys.argv[2:]:  # VmHWM only grows: each file's growth is what it needs beyond the files before it
    base = peak_kb()
    r = vad_pass(path, vad)
    out.append({"seconds": r.duration, "base_kb": base, "grew_kb": peak_kb() - base})
print(json.dumps(out))
"""


def _grown(warm, *paths) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(warm), *map(str, paths)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow_e2e  # three subprocesses over a 2-hour file, 24 s on 2 cores: make test-e2e
def test_peak_memory_is_flat_in_the_recordings_length(tmp_path):
    warm, short, long = tmp_path / "warm.wav", tmp_path / "short.wav", tmp_path / "long.wav"
    write_long_recording(warm, 60)
    write_long_recording(short, 600)
    write_long_recording(long, 7200)
    a, b = _grown(warm, short, long)
    assert (round(a["seconds"]), round(b["seconds"])) == (600, 7200)
    # 12x the audio: what the 2 h file needs beyond the 10-minute file's peak stays within 1.25x of what the
    # 10-minute file needed beyond the warm-up, plus 16 MB for the frame statistics (~4 MB per stream-hour);
    # decoding the 2 h file at once would add 460 MB of float32 samples.
    assert b["grew_kb"] <= 1.25 * a["grew_kb"] + 16 * 1024, (a, b)
