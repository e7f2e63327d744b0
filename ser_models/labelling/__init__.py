"""Labelling: where labels come from. Oracles (simulated from known labels, a CSV people fill in, or people
in a Label Studio project), the playable clips annotators hear, and how several annotators' votes become one
label with their agreement.

Below the loop: nothing here imports ``ser_models.active``; the loop's hand-over
(``ser_models.active.handover``) decides which oracle labels a round. Every name loads on first use.
"""

from ser_models.lazy import lazy_exports

__all__ = ["FileOracle", "LabelStudioConfig", "LabelStudioOracle", "Oracle", "SimulatedOracle",
           "krippendorff_alpha_nominal", "segment_clips", "tally"]

_LAZY = {
    **{name: "ser_models.labelling.oracles" for name in ("FileOracle", "Oracle", "SimulatedOracle")},
    "LabelStudioConfig": "ser_models.labelling.config",
    "LabelStudioOracle": "ser_models.labelling.label_studio_oracle",
    **{name: "ser_models.labelling.agreement" for name in ("krippendorff_alpha_nominal", "tally")},
    "segment_clips": "ser_models.labelling.clips",
}


__getattr__ = lazy_exports(__name__, _LAZY)
