"""The headline figures the docs quote equal the committed results files they come from.

Each entry of ``FIGURES`` names a page, the text it quotes with ``{}`` where figures stand, the results file(s)
under ``bench/results/`` and how to read the figures from them (a table row's cell, a ``jobs.evidence`` report
line, or arithmetic on them: CPU-seconds per pool hour, card seconds per pool hour, a ratio). The test fills
the text with the figures read from the results and asserts the page holds it, so a rerun benchmark whose
numbers move, or a page edited by hand, fails here with the page, the expected text and the results file.

Pure text: no imports of the library.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"


@cache
def results(name: str) -> str:
    """The text of ``bench/results/<name>``."""
    return (RESULTS / name).read_text()


def _flat(text: str) -> str:
    """Whitespace runs collapsed to one space: pages wrap their lines anywhere."""
    return re.sub(r"\s+", " ", text)


def row(name: str, *lead: str, width: int | None = None, section: str | None = None) -> list[str]:
    """The cells of the one Markdown table row of results file ``name`` whose first cells are ``lead``. Where
    two tables start their rows alike, ``width`` (the row's cell count) or ``section`` (the ``## `` heading the
    row sits under) tells them apart."""
    hits = []
    heading = None
    for line in results(name).splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        if line.startswith("|") and section in (None, heading):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[:len(lead)] == list(lead) and width in (None, len(cells)):
                hits.append(cells)
    assert len(hits) == 1, f"bench/results/{name}: {len(hits)} table rows start with {lead}"
    return hits[0]


def report(name: str, strategy: str, labels: int) -> tuple[str, str | None]:
    """``(test UA [CI], paired difference [CI] or None)`` of a ``jobs.evidence`` report line in ``name``."""
    pattern = rf"^\s+{re.escape(strategy)}\s+{labels} labels\s+\d+ seeds\s+(\S+ \[[^\]]+\])(?:\s+(\S+ \[[^\]]+\]))?"
    hits = re.findall(pattern, results(name), re.M)
    assert len(hits) == 1, f"bench/results/{name}: {len(hits)} report lines for {strategy} at {labels} labels"
    ua, diff = hits[0]
    return ua, diff or None


def all_labels(name: str) -> str:
    """The all-labels test UA of a ``jobs.evidence`` report."""
    return re.search(r"^all labels \(\d+ clips\): test UA (\S+)", results(name), re.M)[1]


def number(cell: str) -> float:
    """The first number of a cell (``'**0.73**'``, ``'9621'``, ``'0.412 [0.387, 0.438]'``)."""
    return float(re.search(r"[-+]?\d+(?:\.\d+)?", cell.replace(",", ""))[0])


def points(diff: str) -> str:
    """A difference in UA (``'+0.032 [+0.005, +0.059]'``) as the pages quote it, in points:
    ``'+3.2 [+0.5, +5.9]'``."""
    values = [float(v) for v in re.findall(r"[-+]?\d+\.\d+", diff)]
    return "{:+.1f} [{:+.1f}, {:+.1f}]".format(*(100 * v for v in values))


def ua_ci(name: str, strategy: str, labelled: str) -> str:
    """``'0.412 [0.387, 0.438]'`` of a label-efficiency results row."""
    return row(name, strategy, labelled, width=8)[2]


def paired(name: str, strategy: str, labelled: str) -> str:
    """A label-efficiency row's paired difference to random, in points."""
    return points(row(name, strategy, labelled, width=8)[4].split(" (p=")[0])


def pool_clips(name: str) -> int:
    """The clips a results file states for its pool (``'2,880 clips, 2.59 h of audio'``)."""
    return int(re.search(r"([\d,]+) clips, \d+\.\d+ h\b", results(name))[1].replace(",", ""))


def clips_per_hour(name: str) -> int:
    """Clips per hour of audio of a results file's pool, to three figures: ``~1,110`` for demo-2880."""
    return int(round(pool_clips(name) / pool_hours(name), -1))


def pool_hours(name: str) -> float:
    """The hours of audio a results file states for its pool (``'2.59 h of audio'``, ``'9.01 h'``)."""
    return float(re.search(r"(\d+\.\d+) h\b", results(name))[1])


# --- the figures the cost tables build on -----------------------------------------------------------------

def segment_cpu_s() -> float:
    return 3600 / number(row("segment.md", "jobs.segment, whole job (1 actor, Ray already up)")[2])


def prepare_cpu_s() -> tuple[float, float]:
    secs = [number(r[3]) for r in _rows("ingest.md", 1, "Ray Data prepare_pool")]
    hours = pool_hours("ingest.md")
    return 2 * min(secs) / hours, 2 * max(secs) / hours


def _rows(name: str, column: int, value: str) -> list[list[str]]:
    out = []
    for line in results(name).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > column and cells[column] == value:
            out.append(cells)
    assert out, f"bench/results/{name}: no row with {value!r} in column {column}"
    return out


def cache_wall_per_hour() -> tuple[float, float]:
    """Seconds per pool hour of the Whisper-tiny cache build, in process and on the Ray Data path."""
    return (number(row("functionals_cost.md", "in_process", "encoder")[3]),
            number(row("functionals_cost.md", "ray", "encoder")[3]))


def run_seconds() -> tuple[float, float, float]:
    """A 4-round ``jobs.evidence`` run on demo-2880: the fastest, the slowest, and ``auto``'s (wall s)."""
    m = re.search(r"\((\d+\.\d+)-(\d+\.\d+) s a run, auto (\d+\.\d+) s\)", results("evidence_demo2880_20seeds.md"))
    return float(m[1]), float(m[2]), float(m[3])


def evidence_cpu_s() -> float:
    minutes = float(re.search(r"(\d+\.\d+) min for 81 runs", results("evidence_demo2880_20seeds.md"))[1])
    return 2 * 60 * minutes / pool_hours("functionals_cost.md")


def totals() -> tuple[float, float]:
    """CPU-seconds per pool hour from recordings to one (``auto``) run, and with the evidence run beside it."""
    one = segment_cpu_s() + prepare_cpu_s()[1] + 2 * cache_wall_per_hour()[1] \
        + 2 * run_seconds()[2] / pool_hours("functionals_cost.md")
    return one, one + evidence_cpu_s()


def gpu_rate(encoder: str, precision: str, batch: str = "32", card: str = "gpu.md") -> float:
    return number(row(card, encoder, precision, batch)[4])


def mutation_row(target: str) -> tuple:
    """BENCHMARKS.md's row of a mutation target, from ``bench/results/mutation.json``."""
    import json

    t = json.loads(results("mutation.json"))[target]
    size = f"{t['mutants']} of {t['sampled_from']} (sample)" if t["sampled_from"] else str(t["mutants"])
    score = f"{100 * t['score']:.0f} %" + (f"** [{100 * t['interval'][0]:.0f}, {100 * t['interval'][1]:.0f}]"
                                           if t["interval"] else "**")
    return target, size, t["killed"] + t.get("timeout", 0), t["equivalent"], t["open"], score


def scorer_rates(encoder: str, precision: str, mc: str = "0", front: str | None = None) -> tuple[int, int]:
    """Lowest and highest audio s / s over ``bench/results/gpu_scorer.md``'s runs (one table each) of the row
    with micro-batch auto; ``front`` picks the group-norm front end's rows (``batched``, ``clip by clip``)."""
    front = front or ("n/a" if encoder.startswith("Whisper") else "batched")
    rates = []
    for section in (None, "A second run, on the same machine a minute later (2026-11-28 07:06 UTC, 88 s)"):
        cells = []
        heading = None
        for line in results("gpu_scorer.md").splitlines():
            if line.startswith("## "):
                heading = line[3:].strip()
            lead = [encoder, precision, "auto", "128", mc, front]
            if line.startswith("|") and heading == section:
                c = [x.strip() for x in line.strip().strip("|").split("|")]
                if c[:6] == lead:
                    cells.append(c)
        assert len(cells) == 1, f"gpu_scorer.md, run {section or 'first'}: {len(cells)} rows {encoder} {precision}"
        rates.append(round(number(cells[0][-2])))
    return min(rates), max(rates)


def finetune_rate(precision: str, batch: str) -> float:
    return number(row("gpu.md", "wav2vec2-base-sized, 12 layers (random init)", precision, batch)[3])


WHISPER = "Whisper-tiny (Smart Turn v3.2)"
W2V = "wav2vec2-base-sized, 12 layers (random init)"


def epoch_range() -> str:
    """Card seconds of one LoRA epoch over an hour of 3-s crops (1,200), at the bf16 and TF32 step rates."""
    return f"{1200 / finetune_rate('bf16', '64 x 3 s'):.2f}-{1200 / finetune_rate('tf32', '64 x 3 s'):.2f}"


def tf32_speedups() -> dict[str, str]:
    return {
        "whisper": f"{gpu_rate(WHISPER, 'tf32') / gpu_rate(WHISPER, 'fp32'):.2f}",
        "w2v": f"{gpu_rate(W2V, 'tf32') / gpu_rate(W2V, 'fp32'):.2f}",
        "ft16": f"{finetune_rate('tf32', '16 x 3 s') / finetune_rate('fp32', '16 x 3 s'):.2f}",
        "ft64": f"{finetune_rate('tf32', '64 x 3 s') / finetune_rate('fp32', '64 x 3 s'):.2f}",
    }


def torch_on_gpu() -> str:
    return re.search(r'"torch": "([^"]+)"', results("gpu.md"))[1]


def evidence_cost_after() -> tuple[str, str]:
    cells = row("evidence_cost.md", "after")
    return cells[1], cells[2]


def aubc(pool: str, strategy: str) -> str:
    """A pool's paired test-AUBC difference to random from the default-strategy table."""
    return row("default_strategy.md", pool, strategy)[4]


LE = {"demo-720": "label_efficiency_20seeds.md", "demo-neutral-3000": "label_efficiency_neutral3k.md",
      "espeak-3000": "label_efficiency_espeak20.md", "espeak-neutral-3000": "label_efficiency_espeak_neutral3k.md"}


def le_budgets(pool: str, labels: tuple[int, int, int, int]) -> str:
    cells = [f"{n}: {ua_ci(LE[pool], 'random', f'{p}%')}" for n, p in zip(labels, (5, 10, 20, 40))]
    return "; ".join(cells) + f" | {ua_ci(LE[pool], 'full data (all labels)', '100%').split()[0]} |"


def ev_budgets(name: str, labels: tuple[int, ...]) -> str:
    return "; ".join(f"{n}: {report(name, 'random', n)[0]}" for n in labels) + f" | {all_labels(name)} |"


ONNX_ALL = "onnx_throughput_int8_all_ops.md"


def onnx_cells(name: str, threads: str) -> tuple[str, str, str]:
    """clips/s, the ratio to torch and UA % of one runtime at one thread count."""
    cells = row("onnx_throughput.md", name, threads)
    return cells[2], cells[4], cells[5]


@dataclass(frozen=True)
class Figure:
    """A page, the text it quotes (``{}`` where figures stand), and how to read those figures."""

    doc: str
    quoted: str
    read: Callable[[], tuple]
    source: str


ET = "docs/what-to-expect.md"
EV = "evidence_demo2880_20seeds.md"
LF = "longform_evidence.md"
VW = "verdict_width.md"
DC = "demo_console.md"

FIGURES = [
    # what to expect: cost per pool hour, end to end
    Figure(ET, "**{} CPU-s** ({} audio hours per core-hour)",
           lambda: (f"{segment_cpu_s():.1f}", row("segment.md", "jobs.segment, whole job (1 actor, Ray already up)")[2]),
           "segment.md"),
    Figure(ET, "**{}-{} CPU-s** ({} h in {}-{} s on 2 cores)",
           lambda: (f"{prepare_cpu_s()[0]:.1f}", f"{prepare_cpu_s()[1]:.1f}", f"{pool_hours('ingest.md'):.2f}",
                    *(f"{v:.1f}" for v in sorted(number(r[3]) for r in _rows("ingest.md", 1, "Ray Data prepare_pool"))[::2])),
           "ingest.md"),
    Figure(ET, "**{}-{} CPU-s** ({}-{} s wall on 2 cores)",
           lambda: (*(f"{2 * v:.0f}" for v in cache_wall_per_hour()), *(f"{v:.0f}" for v in cache_wall_per_hour())),
           "functionals_cost.md"),
    Figure(ET, "**{} s** ({:,} audio s / s, TF32)",
           lambda: (f"{3600 / gpu_rate(WHISPER, 'tf32'):.2f}", int(gpu_rate(WHISPER, "tf32"))), "gpu.md"),
    Figure(ET, "2 x 384 float32 per clip, ~{:,} clips per hour", lambda: (clips_per_hour("functionals_cost.md"),),
           "functionals_cost.md"),
    Figure("docs/cost.md", "2 x 384 float32 per clip, ~{:,} clips of 3.2 s per hour",
           lambda: (clips_per_hour("functionals_cost.md"),), "functionals_cost.md"),
    Figure(ET, "**{}-{} CPU-s** (a run took {}-{} s on 2 cores for {} h; `auto` {} s: {} CPU-s)",
           lambda: (*(f"{2 * v / pool_hours('functionals_cost.md'):.1f}" for v in run_seconds()[:2]),
                    *run_seconds()[:2], pool_hours("functionals_cost.md"), run_seconds()[2],
                    f"{2 * run_seconds()[2] / pool_hours('functionals_cost.md'):.1f}"),
           f"{EV}, functionals_cost.md"),
    Figure(ET, "**{} CPU-s** ({} min on 2 cores for {} h)",
           lambda: (f"{evidence_cpu_s():.0f}", re.search(r"(\d+\.\d+) min for 81 runs", results(EV))[1],
                    pool_hours("functionals_cost.md")), EV),
    Figure(ET, "about **{} CPU-seconds ({} core-hours)** from recordings to a 4-round run, and about **{} "
               "CPU-seconds ({} core-hours)** with a 20-seed evidence run",
           lambda: (f"{round(totals()[0], -1):.0f}", f"{totals()[0] / 3600:.2f}", f"{round(totals()[1], -1):.0f}",
                    f"{totals()[1] / 3600:.2f}"),
           "segment.md, ingest.md, functionals_cost.md, " + EV),
    Figure(ET, "**{}-{} s** of the H100 per pool hour ({:,}-{:,} audio s / s)",
           lambda: (f"{3600 / gpu_rate(W2V, 'bf16', '128'):.2f}", f"{3600 / gpu_rate(W2V, 'tf32'):.2f}",
                    int(gpu_rate(W2V, "tf32")), int(gpu_rate(W2V, "bf16", "128"))), "gpu.md"),
    Figure(ET, "(1,200 crops at {}-{:,} crops / s) **{} s**",
           lambda: (round(finetune_rate("tf32", "64 x 3 s")), round(finetune_rate("bf16", "64 x 3 s")), epoch_range()),
           "gpu.md"),
    Figure(ET, "**torch {}, not the pinned torch 2.13.0**", lambda: (torch_on_gpu(),), "gpu.md"),
    # what to expect: UA against labels, random, 20 seeds
    Figure(ET, "| 504 | {}", lambda: (le_budgets("demo-720", (25, 50, 101, 202)),), LE["demo-720"]),
    Figure(ET, "| 2,016 | {}", lambda: (ev_budgets(EV, (100, 200, 400)),), EV),
    Figure(ET, "| 2,088 | {}", lambda: (le_budgets("demo-neutral-3000", (104, 209, 418, 835)),),
           LE["demo-neutral-3000"]),
    Figure(ET, "| espeak-3000 (espeak-ng voices) | 2,120 | {}", lambda: (le_budgets("espeak-3000", (106, 212, 424, 848)),),
           LE["espeak-3000"]),
    Figure(ET, "| espeak-neutral-3000 | 2,120 | {}",
           lambda: (le_budgets("espeak-neutral-3000", (106, 212, 424, 848)),), LE["espeak-neutral-3000"]),
    Figure(ET, "| 1,098 | {}", lambda: (ev_budgets(LF, (100, 200, 400)),), LF),
    # what to expect: when selection pays
    Figure(ET, "| demo-720 | {} | `informative_diverse` {} |",
           lambda: (aubc("demo-720", "auto"), aubc("demo-720", "informative_diverse")), "default_strategy.md"),
    Figure(ET, "| demo-2880 | {} | `margin` {} |",
           lambda: (aubc("demo-2880", "auto"), aubc("demo-2880", "margin")), "default_strategy.md"),
    Figure(ET, "| demo-neutral-3000 | {} | `margin+balanced` {} |",
           lambda: (aubc("neutral-3000", "auto"), aubc("neutral-3000", "margin+balanced")), "default_strategy.md"),
    Figure(ET, "| espeak-3000 | {} |", lambda: (aubc("espeak-3000", "auto"),), "default_strategy.md"),
    Figure(ET, "| espeak-neutral-3000 | {} |", lambda: (aubc("espeak-neutral-3000", "auto"),), "default_strategy.md"),
    Figure(ET, "| longform-3.7h | {} |", lambda: (aubc("longform-3.7h", "auto"),), "default_strategy.md"),
    Figure(ET, "`informative_diverse` {} points at 50 labels",
           lambda: (paired(LE["demo-720"], "informative_diverse", "10%"),), LE["demo-720"]),
    Figure(ET, "sad recall {} points for `informative_diverse` at 100 labels; `auto` {}",
           lambda: (points(row(LF, "informative_diverse", "100")[4]), points(row(LF, "auto", "100")[4])), LF),
    Figure(ET, "reached test UA {} against {} with the shipped pool statistics",
           lambda: (ua_ci("features_auto_platform_demo2880.md", "random", "20%").split()[0],
                    row("speaker_norm_20seeds.md", "20 %", section="demo")[1].split()[0]),
           "features_auto_platform_demo2880.md, speaker_norm_20seeds.md"),
    # the tutorial's figure for informative_diverse, and the export check's measured difference
    Figure("docs/tutorial.md", "`informative_diverse` was {} points *below* random at 400 labels ({},",
           lambda: (f"{-100 * float(report(EV, 'informative_diverse', 400)[1].split()[0]):.1f}",
                    report(EV, "informative_diverse", 400)[1]), EV),
    Figure("docs/deploy.md", "Whisper-tiny encoder: {} in float32",
           lambda: (re.search(r"measured on its probe clips: fp32 (\S+),", results("onnx_throughput.md"))[1],),
           "onnx_throughput.md"),
    Figure("docs/selection-pays.md", "20 paired seeds gave `informative_diverse` {} UA at 400 labels against random, "
                                     "an interval of about +-{} points",
           lambda: (report(EV, "informative_diverse", 400)[1],
                    (lambda d: f"{50 * (float(d[1]) - float(d[0])):.1f}")(
                        re.search(r"\[(\S+), (\S+)\]", report(EV, "informative_diverse", 400)[1]).groups())), EV),
    # the mutation scores, target by target
    *(Figure("BENCHMARKS.md", "| {} | {} | {} | {} | {} | **{} |", lambda t=t: mutation_row(t), "mutation.json")
      for t in ("locks", "ownership", "io (atomic writes, deletes, swaps)", "ledger", "names", "pool build and update",
                "feature-cache guard and keys", "evidence statistics", "strategies: labelled clips excluded")),
    # the H200 beside the H100, and the platform's own scorer on the H200
    Figure("docs/gpu.md", "| scoring, fp32 with TF32, micro-batch 32, audio s / s | {:,} | {:,} | {:,} | {:,} |",
           lambda: tuple(int(gpu_rate(enc, "tf32", card=card)) for enc in (WHISPER, W2V)
                         for card in ("gpu.md", "gpu_h200.md")), "gpu.md, gpu_h200.md"),
    Figure("docs/gpu.md", "| MC-dropout, T = 8, bf16, audio s / s | {:,} | {:,} | {:,} | {:,} |",
           lambda: tuple(int(gpu_rate(enc, "bf16 + MC-dropout T=8", card=card)) for enc in (WHISPER, W2V)
                         for card in ("gpu.md", "gpu_h200.md")), "gpu.md, gpu_h200.md"),
    *(Figure("docs/gpu.md", f"| {page} | {label} | auto (128) | {{:,}}-{{:,}} |",
             lambda a=args: scorer_rates(*a), "gpu_scorer.md")
      for page, label, args in (
          ("Whisper-tiny (bundled)", "fp32 (TF32)", (WHISPER, "fp32")),
          ("Whisper-tiny (bundled)", "bf16", (WHISPER, "bf16")),
          ("Whisper-tiny (bundled)", "bf16, MC-dropout T = 8", (WHISPER, "bf16", "8")),
          ("wav2vec2-base-sized", "fp32 (TF32)", (W2V, "fp32")),
          ("wav2vec2-base-sized", "bf16", (W2V, "bf16")),
          ("wav2vec2-base-sized", "bf16, MC-dropout T = 8", (W2V, "bf16", "8")),
          ("wav2vec2-base-sized, front end clip by clip", "bf16", (W2V, "bf16", "0", "clip by clip")))),
    Figure("BENCHMARKS.md", "{:,}-{:,} audio s / s for Whisper-tiny and {:,}-{:,} for the wav2vec2-base-sized encoder",
           lambda: (min(scorer_rates(WHISPER, p)[0] for p in ("fp32", "bf16")),
                    max(scorer_rates(WHISPER, p)[1] for p in ("fp32", "bf16")),
                    min(scorer_rates(W2V, p)[0] for p in ("fp32", "bf16")),
                    max(scorer_rates(W2V, p)[1] for p in ("fp32", "bf16"))), "gpu_scorer.md"),
    Figure("docs/gpu.md", "Measured on the H200: {:,}-{:,} against {}-{} audio s / s clip by clip",
           lambda: (*scorer_rates(W2V, "bf16"), *scorer_rates(W2V, "bf16", "0", "clip by clip")), "gpu_scorer.md"),
    Figure("docs/gpu.md", "(`bench/results/gpu_scorer_profile.txt`: {} s of a {}-s pass)",
           lambda: (re.search(r"conv1d` took ([\d.]+) s of a ([\d.]+)-s pass", results("gpu_scorer.md")).groups()),
           "gpu_scorer.md"),
    # the corrected figures: GPU epoch time, TF32, torch version, shipped strategy, evidence cost
    Figure("docs/gpu.md", "takes about {} s of the card (1,200 crops at {}-{:,} samples / s",
           lambda: (epoch_range(), round(finetune_rate("tf32", "64 x 3 s")), round(finetune_rate("bf16", "64 x 3 s"))),
           "gpu.md"),
    Figure("docs/cost.md", "(1,200 crops at {}-{:,} crops / s) {} s",
           lambda: (round(finetune_rate("tf32", "64 x 3 s")), round(finetune_rate("bf16", "64 x 3 s")), epoch_range()),
           "gpu.md"),
    Figure("BENCHMARKS.md", "one epoch over an hour of crops (1,200) takes {} s of the card",
           lambda: (epoch_range(),), "gpu.md"),
    Figure("docs/gpu.md", "it scores {w2v}x faster here ({:,} against {:,} audio s / s) and trains {ft16}x faster at "
                          "16 crops a batch and {ft64}x at 64 (Whisper-tiny's scoring: {whisper}x)",
           lambda: (int(gpu_rate(W2V, "tf32")), int(gpu_rate(W2V, "fp32"))), "gpu.md"),
    Figure("BENCHMARKS.md", "{whisper}x for Whisper-tiny's scoring ({:,} against {:,} audio s / s), {w2v}x for the "
                            "wav2vec2-base-sized scoring",
           lambda: (int(gpu_rate(WHISPER, "tf32")), int(gpu_rate(WHISPER, "fp32"))), "gpu.md"),
    Figure("BENCHMARKS.md", "{ft16}x and {ft64}x for its fine-tune steps", lambda: (), "gpu.md"),
    Figure("BENCHMARKS.md", "**torch {}** (CUDA 13.0", lambda: (torch_on_gpu(),), "gpu.md"),
    Figure("BENCHMARKS.md", "**torch {} (not the pinned torch 2.13.0)**", lambda: (torch_on_gpu(),), "gpu.md"),
    Figure("docs/gpu.md", "(torch {} and CUDA 13.0, not the pinned torch 2.13.0)", lambda: (torch_on_gpu(),), "gpu.md"),
    Figure("docs/cost.md", "on an H100 with torch {}, not the pinned torch 2.13.0", lambda: (torch_on_gpu(),), "gpu.md"),
    Figure("docs/recordings.md", "at 400, `informative_diverse` {} UA points {} and the shipped `auto` {}",
           lambda: (*points(report(LF, "informative_diverse", 400)[1]).split(" ", 1), points(report(LF, "auto", 400)[1])),
           LF),
    Figure("BENCHMARKS.md", "Only `informative_diverse` gains, at 400 labels ({}); the shipped `auto` got {} there",
           lambda: (points(report(LF, "informative_diverse", 400)[1]), points(report(LF, "auto", 400)[1])), LF),
    Figure("BENCHMARKS.md", "fanned out 2 runs at a time on xeon-2c: **{} s**, {} s per run",
           lambda: evidence_cost_after(), "evidence_cost.md"),
    # deploy: ONNX Runtime against torch on a CPU
    *[Figure("docs/deploy.md", f"| {shown} | {threads} | {{}} | {{}} | {{}} |",
             lambda name=name, threads=threads: onnx_cells(name, threads), "onnx_throughput.md")
      for shown, name, threads in (
          ("torch float32 (`ser_models.load(checkpoint)`)", "torch fp32 (`ser_models.load`)", "1"),
          ("ONNX Runtime float32", "ONNX Runtime fp32", "1"), ("ONNX Runtime int8", "ONNX Runtime int8", "1"),
          ("torch float32", "torch fp32 (`ser_models.load`)", "2"), ("ONNX Runtime float32", "ONNX Runtime fp32", "2"),
          ("ONNX Runtime int8", "ONNX Runtime int8", "2"))],
    Figure("docs/deploy.md", "gave {} clips/s on one core and lost {} UA points",
           lambda: (row(ONNX_ALL, "ONNX Runtime int8", "1")[2],
                    f"{float(row(ONNX_ALL, 'torch fp32 (`ser_models.load`)', '1')[5]) - float(row(ONNX_ALL, 'ONNX Runtime int8', '1')[5]):.1f}"),
           ONNX_ALL),
    Figure("README.md", "falls {} points below it at 400 labels here",
           lambda: (points(report(EV, "informative_diverse", 400)[1]).split()[0].lstrip("-"),), EV),
    # does selection pay: the verdict's width by labels, and the labels that resolve +-2 points
    Figure("docs/selection-pays.md", "an interval of about +-{} UA points at 50 labels, +-{} at 100 and +-{} at 200",
           lambda: (f"{number(row(VW, '50')[3]):.0f}", f"{number(row(VW, '100')[3]):.1f}",
                    f"{number(row(VW, '200')[3]):.1f}"), VW),
    Figure("docs/selection-pays.md", "about {} training labels (`jobs.plan` prints it", lambda: (f"{int(row(VW, '200')[6]):,}",), VW),
    Figure("docs/selection-pays.md", "+-{} points at 200 labels, extrapolated", lambda: (row(VW, "200")[3],), VW),
    Figure("docs/selection-pays.md", "the width shrank by a factor of {}, less than",
           lambda: (f"{number(row(VW, '200')[3]) / number(row(VW, '100')[3]):.2f}",), VW),
    Figure("docs/selection-pays.md", "predicts, so expect more than {}.", lambda: (f"{int(row(VW, '200')[6]):,}",), VW),
    Figure("docs/tutorial.md", "about {} for an interval of +-2 UA points", lambda: (f"{int(row(VW, '200')[6]):,}",), VW),
    # the demo's console and timing
    Figure("BENCHMARKS.md", "({} min): {} lines, none on stderr: {} are `make`'s echo, {} the platform's, **{} Ray's own**",
           lambda: (re.search(r"`make demo DEMO_DIR=<fresh folder>`; ([\d.]+) min", results(DC))[1],
                    *(row(DC, label)[1] for label in ("all lines (stdout + stderr)", "make's echo of its commands",
                                                      "the platform's lines", "Ray's own lines (goal 0)"))), DC),
    Figure("BENCHMARKS.md", "the evidence job's `done in {} min: ...`",
           lambda: (re.search(r"done in ([\d.]+) min", results(DC))[1],), DC),
    Figure("docs/tutorial.md", "The demo took {} minutes on 2 cores, {} of them in",
           lambda: (re.search(r"`make demo DEMO_DIR=<fresh folder>`; ([\d.]+) min", results(DC))[1],
                    re.search(r"done in ([\d.]+) min", results(DC))[1]), DC),
]


def expected(figure: Figure) -> str:
    return figure.quoted.format(*figure.read(), **tf32_speedups())


def check(figure: Figure, page_text: str) -> str | None:
    """``None`` when the page quotes the figure as its results file has it, else what is wrong."""
    want = expected(figure)
    if _flat(want) in _flat(page_text):
        return None
    return f"{figure.doc} should quote {want!r} (read from bench/results/{figure.source})"


def test_headline_figures_equal_their_results_files():
    problems = [p for f in FIGURES if (p := check(f, (REPO / f.doc).read_text()))]
    assert not problems, "\n".join(problems)


def test_a_figure_that_moved_is_caught():
    """The checker is not vacuous: a page whose figure differs from its results file fails."""
    figure = FIGURES[3]  # the H100 seconds per pool hour of Whisper-tiny
    page = (REPO / figure.doc).read_text()
    want = expected(figure)
    assert check(figure, page) is None
    assert check(figure, page.replace(want, want.replace("0.37", "0.42"))) is not None


def test_stale_claims_stay_gone():
    """Figures and phrases the results files contradict, or that tell how the work went instead of what was
    measured, are not on the pages."""
    pages = {name: (REPO / name).read_text() for name in (
        "README.md", "BENCHMARKS.md", ET, "docs/gpu.md", "docs/cost.md", "docs/recordings.md", "docs/planning.md",
        "docs/index.md")}
    stale = [r"3\.5-4\.2 s", r"2\.2-2\.4x", r"no GPU figure has been measured", r"(?<![\w&])#\d{2}\b",
             r"\bstop \d+\b", r"the code before", r"\bas before\b", r"Which cache-build figure",
             r"shipped strategy \(`informative_diverse`\)", r"shipped `informative_diverse`"]
    problems = [f"{name}: {pattern}" for name, text in pages.items() for pattern in stale
                if re.search(pattern, _without_code_blocks(text))]
    assert not problems, "\n".join(problems)


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def test_what_to_expect_is_short_and_linked_first():
    page = (REPO / ET).read_text()
    assert len(page.splitlines()) <= 150, f"{ET} has {len(page.splitlines())} lines: keep it to 150"
    for name in ("README.md", "BENCHMARKS.md"):
        links = re.findall(r"\]\((docs/[\w-]+\.md)", (REPO / name).read_text())
        assert "docs/what-to-expect.md" in links[:3], f"{name} links what-to-expect late: {links[:3]}"
    assert re.search(r"^what-to-expect$", (REPO / "docs" / "index.md").read_text(), re.M)


def test_the_demo_report_quoted_is_the_committed_runs_report():
    """README and the tutorial quote ``make demo``'s report table as its committed run printed it
    (``bench/results/demo_report.md``, written by ``python -m bench.demo_console``), character for character."""
    block = re.search(r"```\n(per budget: .*?)```", results("demo_report.md"), re.S)
    assert block, "bench/results/demo_report.md: no report table"
    for page in ("README.md", "docs/tutorial.md"):
        text = (REPO / page).read_text()
        quoted = re.findall(r"```\n(per budget: .*?)```", text, re.S)
        assert quoted == [block[1]], f"{page}: the demo's report differs from bench/results/demo_report.md"
