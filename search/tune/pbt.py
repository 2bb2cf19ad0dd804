"""Ray's PopulationBasedTraining with one change: a trial whose budget is spent is never exploited.

A trainable marks its last report with ``search.trainables.LAST_REPORT`` (the built-in ones do). Ray's PBT would still
exploit the trial at that report when it falls in the lower quantile: the trial takes the donor's checkpoint and a new
config, finds no step left to train and ends, so its final checkpoint holds the donor's weights, trained under the
donor's config, while its result (and ``search export``) names the new one. Here such a trial keeps its own
checkpoint and config. PBT still sees the report, so its synchronous bookkeeping is Ray's (Ray's ``done`` key would
end the trial before the scheduler saw it, and a synchronous population waiting on that trial would wait forever).
``_exploit`` is private to Ray; ``ray[tune]`` is pinned to 2.60.x.
"""

from __future__ import annotations

from ray.tune.schedulers import PopulationBasedTraining

from search.trainables import LAST_REPORT


class SpentAwarePBT(PopulationBasedTraining):
    """``PopulationBasedTraining`` that does not exploit a trial whose latest report is its last."""

    def _exploit(self, tune_controller, trial, trial_to_clone) -> None:
        if self._trial_state[trial].last_result.get(LAST_REPORT):
            return  # nothing left to train under a new config: the trial ends on its own checkpoint
        super()._exploit(tune_controller, trial, trial_to_clone)
