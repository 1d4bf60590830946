"""Few-shot evaluation (HyperCLOVA Table 3 protocol), perplexity and the lm-eval bridge.

    python -m hyperclova.eval --checkpoint DIR --task nsmc --data ratings_test.txt --train ratings_train.txt

See docs/eval.md. Modules: `formats` (official file readers), `tasks` (task YAML), `protocol`
(demonstrations, prompts), `scorer` (log-likelihood/generation through forward_eval), `metrics`,
`runner`, `report` (tables), `harness` (lm-evaluation-harness model class), `demo`.
"""
from hyperclova.eval.api import run_evaluation

__all__ = ["run_evaluation"]
