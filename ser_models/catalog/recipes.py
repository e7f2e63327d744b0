"""The shipped recipes: example configs of every job, installed with the package.

Each recipe is a YAML file in ``ser_models/configs/`` (a clone's ``jobs/configs/`` points there). Its job
comes from its file name (:data:`RECIPE_PREFIXES`), so ``ser-models configs`` can list them by job and
``ser-models after --config demo_after`` can find one by name. Nothing here imports torch or Ray.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ser_models.exceptions import ConfigError

#: The folder that holds the recipes.
RECIPE_DIR = Path(__file__).resolve().parents[1] / "configs"

#: File-name prefix -> job (the subcommand's module name). The first prefix a name starts with wins, so the
#: longer prefixes come first where two could match.
RECIPE_PREFIXES = {
    "prepare_pool_": "prepare_pool",
    "finetune_": "finetune",
    "tapt_": "tapt",
    "demo_after": "after",
    "my_data_after": "after",
    "demo_evidence": "evidence",
    "evidence_": "evidence",
    "after_": "after",
    "sweep_": "sweep",
    "adapt_": "adapt",
    "layer_analysis_": "layer_analysis",
    "anchor_": "anchor",
    "distill_": "distill",
    "adapter_pretrain_": "adapter_pretrain",
    "predict_": "predict",
    "segment_": "segment",
}


def recipe_job(path: str | Path) -> str | None:
    """The job a recipe file is for, read from its name; None when no prefix matches."""
    name = Path(path).name
    return next((job for prefix, job in RECIPE_PREFIXES.items() if name.startswith(prefix)), None)


def recipes() -> list[Path]:
    """Every shipped recipe, sorted by name."""
    return sorted(p for ext in ("*.yaml", "*.yml") for p in RECIPE_DIR.glob(ext))


def recipe_summary(path: Path) -> str:
    """The first sentence of a recipe's leading comment (one line for ``ser-models configs``)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text and lines:
            break
        lines.append(text)
    text = " ".join(lines).strip()
    end = text.find(". ")
    return text[: end + 1] if end >= 0 else text


def recipe_named(name: str) -> Path | None:
    """The shipped recipe called ``name`` (with or without ``.yaml`` / ``.yml``), or None."""
    stem = name[:-5] if name.endswith(".yaml") else name[:-4] if name.endswith(".yml") else name
    return next((p for p in recipes() if p.stem == stem), None)


def find_recipe(name: str, job: str | None = None) -> Path:
    """The recipe called ``name`` (with or without ``.yaml``).

    Raises:
        ConfigError: naming the recipes of ``job`` (or all) when there is none of that name, or when the recipe
            is for another job.
    """
    found = recipe_named(name)
    names = [p.stem for p in recipes() if job is None or recipe_job(p) == job]
    if found is None:
        # `--config jobs/configs/NAME.yaml`: a path where a name goes (the docs' in-clone form, typed outside one)
        shipped = recipe_named(PurePosixPath(name.replace("\\", "/")).name) if "/" in name or "\\" in name else None
        hint = (f"--config takes a recipe's name, not a path: `--config {shipped.stem}`; a config file of your own "
                f"goes without --config" if shipped is not None else
                f"the recipes{f' of {job}' if job else ''} are: {', '.join(names) or 'none'} "
                f"(`ser-models configs` lists them all)")
        raise ConfigError(f"no recipe named {name!r}; {hint}")
    if job is not None and recipe_job(found) not in (None, job):
        raise ConfigError(f"recipe {found.stem!r} is for `{recipe_job(found)}`, not `{job}`; "
                          f"the recipes of {job} are: {', '.join(names) or 'none'}")
    return found
