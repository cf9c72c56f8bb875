"""The trial budget as a total over the study, shared by every worker. A trial uses the
budget unless it was failed for reasons outside itself (its worker died and it was
retried, or it was asked past the budget by a racing worker, or it failed the same way as
every trial of its run before any finished: a config or environment error): those carry
`not_counted`, the last also `same_failure`."""
import optuna
from optuna.trial import FrozenTrial, TrialState

NOT_COUNTED = "not_counted"
SAME_FAILURE = "same_failure"


def counts(t: FrozenTrial) -> bool:
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return t.state == TrialState.FAIL and not t.user_attrs.get(NOT_COUNTED)


def used(trials: list[FrozenTrial]) -> int:
    return sum(counts(t) for t in trials)


def failed(trials: list[FrozenTrial], same: bool = False) -> list[FrozenTrial]:
    """The failures that count; with `same`, also those of a run's opening same-way streak."""
    return [t for t in trials if t.state == TrialState.FAIL and (
        not t.user_attrs.get(NOT_COUNTED) or (same and t.user_attrs.get(SAME_FAILURE)))]


def within_budget(trials: list[FrozenTrial], number: int, budget: int) -> bool:
    """Trial numbers are handed out atomically by the storage, so ranking by number makes
    racing workers agree on who got the last slots."""
    return sum(counts(t) for t in trials if t.number < number) < budget


def fail_uncounted(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Mark a trial failed without spending budget; False if another worker finished or failed
    it first. That can happen before any of the storage calls below (Optuna refuses every write
    to a finished trial), so each is covered; the check first keeps a trial finished elsewhere
    free of a failure reason it never had (a finish in the instant between the writes still gets
    one, harmlessly: the state decides, and a COMPLETE trial counts)."""
    storage = study._storage
    try:
        if storage.get_trial(trial_id).state.is_finished():
            return False
        storage.set_trial_user_attr(trial_id, NOT_COUNTED, True)
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        return storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
