"""Manifests in and out in the formats speech teams keep their data in: Lhotse, Hugging Face datasets, NeMo; and
the standard emotional-speech corpora (IEMOCAP, MSP-Podcast, CREMA-D, RAVDESS) in, from their own folders.

Importers write one of our manifests (a segments manifest for ``jobs.prepare_pool`` or a recordings manifest
for ``jobs.segment``) and report the rows they took and the rows they refused, with the reason; exporters
write our labelled ledger, segments and timelines in each format. ``python -m jobs.convert`` runs both
(docs/interoperability.md). Neither ``lhotse`` nor ``datasets`` is needed: the files they write are read and
written with the platform's own JSON, Arrow and Parquet readers.
"""

from ser_models.formats.convert import ConvertConfig, convert, detect_format
from ser_models.formats.corpora.crema_d import import_crema_d
from ser_models.formats.corpora.iemocap import import_iemocap
from ser_models.formats.corpora.msp_podcast import import_msp_podcast
from ser_models.formats.corpora.ravdess import import_ravdess
from ser_models.formats.hf_dataset import import_hf, write_hf
from ser_models.formats.lhotse_manifest import import_lhotse, write_lhotse
from ser_models.formats.nemo_manifest import import_nemo, write_nemo
from ser_models.formats.rows import ImportReport, Row
from ser_models.formats.sources import export_table

__all__ = ["ConvertConfig", "ImportReport", "Row", "convert", "detect_format", "export_table", "import_crema_d",
           "import_hf", "import_iemocap", "import_lhotse", "import_msp_podcast", "import_nemo", "import_ravdess",
           "write_hf", "write_lhotse", "write_nemo"]
