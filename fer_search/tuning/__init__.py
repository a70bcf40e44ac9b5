"""The search layer: Ray Tune with an Optuna searcher, ASHA, the trainable, the refit, the
final evaluation and the leaderboard. The only layer (with bench/) that imports Ray, and it
does so inside functions, so importing this package is cheap."""

from fer_search.tuning.run import Outcome, resume_search, start_search
from fer_search.tuning.search_options import SearchOptions

__all__ = ["Outcome", "SearchOptions", "resume_search", "start_search"]
