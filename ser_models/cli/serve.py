"""``ser-models-serve``: predict emotions in audio files with a model exported to ONNX, without torch.

    ser-models-serve MODEL FILE [FILE ...] [--threads N]

``MODEL`` is what ``ser-models export`` wrote (the ``.onnx`` file or its folder). Each file is decoded,
averaged to mono and resampled to 16 kHz as a pool's clips are, and scored by ONNX Runtime
(:func:`ser_models.load` with ``runtime="onnx"``). One JSON line per file goes to stdout: its label,
confidence, class probabilities and dimensions. A file that cannot be read gets a line with its ``error`` and
the command exits 2 after the others. This is the command of the serving install (``ser-models-serve``, no
torch, Ray or transformers) and works the same in the full one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import ser_models
from ser_models.exceptions import AudioError, SERError


def plain(text: str) -> str:
    """``text`` without its reST markup, as a terminal shows it: ````x```` -> ``x``, ``:func:`a.b``` -> ``a.b``."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"``([^`]+)``", r"\1", text)


def main(argv: list[str] | None = None) -> int:
    paragraphs = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(prog="ser-models-serve", description=plain(paragraphs[0].split(": ", 1)[1]),
                                     epilog=plain(" ".join(paragraphs[2].split())))
    parser.add_argument("model", help="the exported ONNX graph (model.onnx) or the folder holding it")
    parser.add_argument("files", nargs="+", help="audio files (any format the platform decodes)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: its own)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    try:
        predictor = ser_models.load(args.model, runtime="onnx", threads=args.threads)
    except SERError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    failed = 0
    for path in args.files:  # one file at a time: a bad file is reported and the others still scored
        try:
            row = predictor.predict([path])[0].to_dict()
        except AudioError as exc:
            failed += 1
            row = {"input": path, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(row), flush=True)
    if failed:
        raise SystemExit(2)
    return 0


if __name__ == "__main__":
    main()
