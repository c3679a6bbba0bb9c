"""The one error family: every failure tideline reports on purpose is a `TidelineError`.

Messages name the branch, ref, path, file or column at fault and say what to do next; the CLI
prints them without a traceback.
"""

from __future__ import annotations


class TidelineError(Exception):
    """Base of every error tideline raises on purpose."""


class ConfigError(TidelineError):
    """Settings are missing or invalid."""


class RayUnavailable(TidelineError):
    """The configured Ray cluster cannot be reached."""


class LakeError(TidelineError):
    """Something about the versioned lake went wrong."""


class InvalidName(LakeError):
    """A repository, branch or tag name breaks the naming rules."""


class InvalidPath(LakeError):
    """An object path is empty, absolute, or climbs out with `..`."""


class RefNotFound(LakeError):
    """A branch, tag or commit does not exist."""


class InvalidRef(RefNotFound, InvalidName):
    """A ref expression is malformed (`main~x`), so it can name nothing."""


class BranchExists(LakeError):
    """A branch or tag with that name exists already."""


class ObjectNotFound(LakeError):
    """No object at that path on that ref."""


class ObjectExpired(LakeError):
    """A commit's data was garbage collected under the retention (`tideline lake gc`; lakeFS
    answers 410 Gone): its record and message remain, its objects do not."""


class ObjectTooLarge(LakeError):
    """An object is too large to read into memory at once."""


class LakeFull(LakeError):
    """The lake's storage has no space left for a write; nothing of that write was kept."""


class CorruptObject(LakeError):
    """An object's bytes no longer match its checksum."""


class DirtyBranch(LakeError):
    """A branch has uncommitted changes where a clean branch is required."""


class MergeConflict(LakeError):
    """Both sides of a merge changed the same paths differently."""

    def __init__(self, source: str, dest: str, paths: list[str]) -> None:
        self.source, self.dest, self.paths = source, dest, sorted(paths)
        shown = ", ".join(self.paths[:10]) + (" …" if len(self.paths) > 10 else "")
        super().__init__(
            f"cannot merge {source!r} into {dest!r}: "
            f"{len(self.paths)} conflicting path(s): {shown}. "
            f"Both branches are unchanged; resolve on {source!r} and merge again."
        )


class LakeUnavailable(LakeError):
    """The lake backend could not be reached."""


class RunInProgress(LakeError):
    """Another live process is running the same run id; a second copy would write its branch
    twice. A run whose process died leaves no hold, so re-running it after a crash works."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id!r} is already in progress in another process (its branch "
            f"run-{run_id} is being written); wait for it to finish, or start a new run id"
        )
        self.run_id = run_id


class IngestionError(TidelineError):
    """Landing or checkpointing a source's data failed."""


class QualityGateFailed(TidelineError):
    """Validation found data too bad to publish; the run's branch is kept and main is untouched."""


class ContractError(TidelineError):
    """A schema contract is invalid: unreadable YAML, an unknown type, a rule that does not fit."""


class SourceError(IngestionError):
    """A connector could not read its source: the message names the source and what failed."""

    def __init__(self, source: str, message: str) -> None:
        self.source, self.detail = source, message
        super().__init__(f"source {source!r}: {message}")

    def __reduce__(self) -> tuple:
        # rebuilt from its own arguments, so it survives pickling between Ray/Prefect workers
        return type(self), (self.source, self.detail)


class SourceUnavailable(SourceError):
    """The source could not be reached (connection refused, timeouts, retries exhausted): a
    later run may succeed, so tasks may retry on this one."""


class SourceAbsent(SourceError):
    """The source has nothing to read yet: no file matches its URL, or the environment variable
    that names its database is not set (in a deployment's environment, not yet in this one)."""


class FeatureDefinitionError(TidelineError):
    """A feature view cannot be computed as declared: an unknown column or entity, a bad window,
    an aggregation that does not fit its column, a duplicate name, a missing source table."""


class CustomFeatureError(TidelineError):
    """A custom view's function raised, or returned what a feature table cannot hold: another
    number of rows than the spine, a row of no spine entity, a value neither a number nor
    text. The message names the view, the function and an example row."""


class RegistryError(TidelineError):
    """The feature registry's database cannot be opened or is newer than this tideline."""


class RetrievalError(TidelineError):
    """A training-set or online request that cannot be answered: a missing column, an unknown
    or ambiguous feature, timestamps that cannot be compared."""


class OnlineStoreUnavailable(TidelineError):
    """The online store (Redis, SQLite file) cannot be reached; offline retrieval still works."""


class UnknownFeature(RetrievalError):
    """A requested feature or view that the definitions do not have."""


class ModelError(TidelineError):
    """A model cannot be trained, registered or used as asked: too few labels, one class only,
    features the store does not serve at the model's versions, a missing artifact."""


class MonitoringError(TidelineError):
    """Drift or quality monitoring cannot compare: missing columns, no data, a bad rule."""


class DiscoveryError(TidelineError):
    """Feature discovery cannot start: a missing or cyclic relationship, a bad budget, a table
    it cannot place in time."""
