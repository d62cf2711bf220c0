"""Answer-quality metrics of the bake-off: BERTScore, key-fact match and their summary statistics.

Importing this package is cheap: ``torch``/``transformers``/``bert_score`` are imported when a
:class:`BertScorer` first scores. Models are parameters (a name or local folder): nothing here knows where the
local model comes from.
"""

from tailor.metrics.bertscore import LOCAL_NUM_LAYERS, PRODUCTION_MODEL, PRODUCTION_NUM_LAYERS, BertScorer
from tailor.metrics.facts import key_fact_match, key_facts
from tailor.metrics.stats import Summary, mean_ci, percentile

__all__ = [
    "LOCAL_NUM_LAYERS",
    "PRODUCTION_MODEL",
    "PRODUCTION_NUM_LAYERS",
    "BertScorer",
    "Summary",
    "key_fact_match",
    "key_facts",
    "mean_ci",
    "percentile",
]
