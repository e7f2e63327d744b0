"""What keying an encoder by content costs: today's path-keyed fingerprint against hashing its weight files.

An encoder over 20M parameters used to be fingerprinted by its config and its folder's path (new weights saved
into the same folder kept the key). It is now keyed by its files' content
(:func:`ser_models.encoders.content_hash.hash_files`), each file's sha256 cached beside it in
``.ser-hashes.json`` by size, mtime and inode. This benchmark builds a weights folder of ``--size-gb`` (a real
``config.json`` and ``preprocessor_config.json`` of a wav2vec2-large-like model, and ``--shards`` safetensors
files of random bytes: the hash reads bytes, it never parses them) in a new scratch folder under ``--workdir``,
and times side by side, in one run:

* **path-keyed (before)**: sha256 of the config (as ``Encoder`` hashed it: ``to_dict`` without the volatile
  keys, as sorted JSON), the family and normalisation, and the ``source`` string;
* **content, first hash, cold**: the same config part plus ``hash_files`` with no sidecar and the files evicted
  from the page cache (``posix_fadvise(DONTNEED)`` on this benchmark's own files only): a model read from disk
  on its first use;
* **content, first hash, warm**: the same with the files in the page cache (a model just written or loaded);
* **content, sidecar hit**: a new process's view (this process's memory cleared): one ``stat`` per file and the
  sidecar read (what every build after the first costs; a folder that cannot be written is instead hashed once
  per process and remembered in memory).

The scratch folder (``<workdir>/fingerprint``, marked as a benchmark's through ``bench.common.fresh_workdir``) is
emptied at the end unless ``--keep``; nothing outside it is written but the results file.

    python -m bench.fingerprint                      # 1.2 GB in /tmp/ser_bench/fingerprint
    python -m bench.fingerprint --size-gb 0.2 --repeats 1 --results ''   # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from bench.common import (
    DEFAULT_WORKDIR,
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    fresh_workdir,
    machine_info,
    machine_markdown,
    md_table,
    write_results,
)

CHUNK = 1 << 26  # 64 MiB of random bytes per write


def build_folder(folder: Path, size_gb: float, shards: int) -> list[Path]:
    """A Hugging Face-like wav2vec2-large folder: its two configs and ``shards`` weight files of random bytes."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

    Wav2Vec2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                   feat_extract_norm="layer", do_stable_layer_norm=True).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    total = int(size_gb * 1e9)
    files = []
    for k in range(shards):
        path = folder / f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        left = total // shards + (total % shards if k == shards - 1 else 0)
        with open(path, "wb") as fh:
            while left > 0:
                n = min(CHUNK, left)
                fh.write(os.urandom(n))
                left -= n
            fh.flush()
            os.fsync(fh.fileno())
        files.append(path)
    return files


def evict(paths: list[Path]) -> None:
    """Drop these files (and only these) from the page cache, so the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def config_part(hf_config, family: str = "wav2vec2", normalize: bool = True):
    """The hash of what both keys share: the config as ``Encoder`` hashes it, the family and normalisation."""
    from ser_models.encoders.encoder import _VOLATILE_CONFIG_KEYS

    h = hashlib.sha256()
    conf = {k: v for k, v in hf_config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    h.update(json.dumps(conf, sort_keys=True, default=str).encode())
    h.update(f"family={family};normalize={normalize}".encode())
    return h


def path_keyed(hf_config, source: str) -> str:
    """The fingerprint of an encoder over 20M parameters before this change (no ``cfg.checkpoint``)."""
    h = config_part(hf_config)
    h.update(f"source={source}".encode())
    return h.hexdigest()


def content_keyed(hf_config, folder: Path) -> str:
    """The content fingerprint's work for the same encoder (:meth:`Encoder.portable_fingerprint`, files branch)."""
    from ser_models.encoders.content_hash import hash_files

    h = config_part(hf_config)
    h.update(f"files={hash_files(folder)}".encode())
    return h.hexdigest()


def timed(fn, repeats: int, before=lambda: None) -> list[float]:
    times = []
    for _ in range(repeats):
        before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def busy_processes() -> str:
    """The processes other than this one using a CPU when the run starts (the machine is shared)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu", "--no-headers"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    rows = [line.split(None, 2) for line in out.splitlines()]
    busy = [f"{r[2]} ({r[1]} %)" for r in rows if len(r) == 3 and r[0] != str(os.getpid()) and float(r[1]) >= 10]
    return ", ".join(busy[:5]) or "none"


def run(args) -> str:
    from transformers import AutoConfig

    from ser_models.encoders import content_hash
    from ser_models.encoders.content_hash import SIDECAR_NAME, clear_memo
    from ser_models.ownership import clear, remove

    work = claim_workdir(args.workdir)
    folder = fresh_workdir(work / "fingerprint")  # marked as this benchmark's; emptied now and at the end
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    others = busy_processes()
    load = LoadWindow()
    try:
        t0 = time.perf_counter()
        weights = build_folder(folder, args.size_gb, args.shards)
        build_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in folder.iterdir() if not p.name.startswith("."))
        hf_config = AutoConfig.from_pretrained(folder)
        source = str(folder)

        def warm():  # no sidecar, nothing in this process's memory
            remove(folder, "bench", SIDECAR_NAME, recorded_only=False)
            clear_memo()

        def cold():
            warm()
            evict(weights)

        rows = {
            "path-keyed (before)": timed(lambda: path_keyed(hf_config, source), args.repeats),
            "content, first hash, cold (files read from disk)": timed(lambda: content_keyed(hf_config, folder),
                                                                       args.repeats, cold),
            "content, first hash, warm (files in the page cache)": timed(lambda: content_keyed(hf_config, folder),
                                                                        args.repeats, warm),
        }
        content_keyed(hf_config, folder)  # the sidecar written
        content_hash.HASHED.clear()
        rows["content, sidecar hit (a new process)"] = timed(lambda: content_keyed(hf_config, folder), args.repeats,
                                                             clear_memo)
        sidecar_reads = len(content_hash.HASHED)
        same_key = path_keyed(hf_config, source) == path_keyed(hf_config, source + "-moved")
    finally:
        if not args.keep:
            clear(folder, "bench")
    load.close()
    table = md_table(["fingerprint", "median s", "min s", "runs", "GB/s (median)"],
                     [[name, f"{statistics.median(t):.4f}", f"{min(t):.4f}", len(t),
                       f"{size / 1e9 / statistics.median(t):.2f}" if "first hash" in name else "-"]
                      for name, t in rows.items()])
    cold_s = statistics.median(rows["content, first hash, cold (files read from disk)"])
    hit_s = statistics.median(rows["content, sidecar hit (a new process)"])
    return "\n\n".join([
        "# Keying an encoder by content: what hashing its weight files costs",
        f"`python -m bench.fingerprint --size-gb {args.size_gb:g} --shards {args.shards} --repeats {args.repeats}`: "
        f"a wav2vec2-large-like folder ({size / 1e9:.2f} GB: `config.json`, `preprocessor_config.json` and "
        f"{args.shards} safetensors files of random bytes, written in {build_s:.1f} s), fingerprinted side by side "
        "by the path-keyed fingerprint used before (config + `source` string) and by content "
        "(config + `hash_files`: each file's sha256, cached in `.ser-hashes.json` by size, mtime and inode).",
        machine_markdown(machine_info(), load) + f"\n`uptime` before: `{uptime}`. Other processes using a CPU at "
        f"the start: {others}.",
        table,
        f"The first content hash reads every byte once ({cold_s:.2f} s from disk for {size / 1e9:.2f} GB here); "
        f"every later build reads the sidecar instead ({hit_s * 1e3:.1f} ms; {sidecar_reads} files read and "
        "hashed over those runs). The path-keyed fingerprint cost nothing and named "
        f"nothing: a folder moved elsewhere got a new key (same key after a move: {same_key}), new weights in the "
        "same folder kept the old one.",
    ])


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="benchmark work folder (the weights go in "
                    "its fingerprint/ scratch folder)")
    ap.add_argument("--size-gb", type=float, default=1.2, help="total size of the weight files")
    ap.add_argument("--shards", type=int, default=3, help="safetensors files the weights are split into")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the weights folder after the run")
    ap.add_argument("--results", default=str(RESULTS_DIR / "fingerprint.md"), help="results file; empty = print only")
    args = ap.parse_args(argv)
    text = run(args)
    print(text)
    if args.results:
        print(f"wrote {write_results(args.results, text)}")
    return text


if __name__ == "__main__":
    main()
