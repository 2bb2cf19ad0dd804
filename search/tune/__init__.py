"""The Ray side: a validated spec -> Ray Tune's param_space, search algorithm and scheduler -> a run.

``space`` turns each distribution's law into a Tune domain and a hyperopt expression; ``registry`` maps method and
scheduler names to Ray's classes, checks their arguments and carries what the flow must know of each scheduler;
``runner`` checks everything that needs more than the YAML, then runs or resumes the sweep; ``progress`` prints a
line per event and keeps good copies of the state; ``wandb`` keeps the API key out of Ray's logs; ``pbt`` is Ray's
PBT that never exploits a spent trial; ``describe`` is what ``search validate`` prints. Ray itself is imported only
when needed.
"""

from search.tune.extend import extend
from search.tune.plan import plan
from search.tune.registry import check_spec
from search.tune.runner import disconnect, resume, run

__all__ = ["check_spec", "disconnect", "extend", "plan", "resume", "run"]
