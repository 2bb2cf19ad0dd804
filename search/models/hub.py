"""Models named by their Hugging Face Hub id, resolved through huggingface_hub's cache as ``from_pretrained`` does.

``model: Helsinki-NLP/opus-mt-en-de`` names the ``main`` revision; ``model: Helsinki-NLP/opus-mt-en-de@v1.0`` (or
``@<commit hash>``) pins a branch, tag or commit: the ``repo@revision`` form of huggingface_hub's own file system
(``hf://org/name@rev``). The cache is the one ``from_pretrained`` uses (``HF_HUB_CACHE``, else ``HF_HOME/hub``);
with ``HF_HUB_OFFLINE=1`` only the cache is read. A local directory of the same name wins, as in transformers.

huggingface_hub reads those variables when it is imported; everything here reads them through its ``constants``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from search.errors import SpecError

# Weights of other frameworks and runtimes that a PyTorch trial never reads: not downloaded with a snapshot.
OTHER_WEIGHTS = ("*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "*.tflite", "*.mlmodel", "onnx/*", "coreml/*")


@dataclass(frozen=True)
class HubModel:
    """A Hub model reference: ``repo_id`` and an optional ``revision`` (branch, tag or commit hash)."""

    repo_id: str
    revision: str | None = None

    @classmethod
    def parse(cls, model: object) -> HubModel | None:
        """The reference ``model`` names, or None when it cannot be a Hub id (a path such as ``./m``, ``/m``,
        ``a/b/c``, or not a string)."""
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        if not isinstance(model, str) or model.startswith((".", "~", "/")):
            return None
        repo_id, _, revision = model.partition("@")
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            return None
        return cls(repo_id, revision or None)

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id

    def cached_snapshot(self) -> Path | None:
        """The snapshot directory of this revision in the Hub cache, or None (no network is used)."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(self.repo_id, revision=self.revision, local_files_only=True))
        except LocalEntryNotFoundError:
            return None

    def check(self, file: str) -> None:
        """The reference resolves, without reading weights: a cached snapshot with a ``config.json``, or (online)
        the Hub knows the model and revision.

        Raises:
            SpecError: one line naming ``model``, why, and the fix.
        """
        from huggingface_hub import is_offline_mode

        snapshot = self.cached_snapshot()
        if snapshot is not None and (snapshot / "config.json").is_file():
            return
        if is_offline_mode():
            raise SpecError(file, "model", self._not_cached(snapshot))
        self._check_online(file)

    def local_dir(self, file: str = "<spec>") -> Path:
        """The snapshot directory, downloaded into the Hub cache first when online (weights of other frameworks
        left out); offline, the cached one."""
        from huggingface_hub import is_offline_mode, snapshot_download

        try:
            return Path(
                snapshot_download(
                    self.repo_id,
                    revision=self.revision,
                    local_files_only=is_offline_mode(),
                    ignore_patterns=list(OTHER_WEIGHTS),
                )
            )
        except Exception:
            self.check(file)  # the one-line reason, when there is one
            raise

    def _not_cached(self, snapshot: Path | None) -> str:
        from huggingface_hub import constants

        where = f"the Hub cache HF_HUB_CACHE={constants.HF_HUB_CACHE}"
        fetch = f"`hf download {self.repo_id}{f' --revision {self.revision}' if self.revision else ''}`"
        fix = f"run {fetch} on a machine with internet and copy the cache here, or unset HF_HUB_OFFLINE"
        if snapshot is not None:
            return f"{self}: the cached snapshot {snapshot} has no config.json; {fix}"
        cached = self.cached_revisions()
        if cached is None:
            return f"{str(self)!r} is no local directory and not in {where}; {fix}"
        offered = ", ".join(cached) or "none"
        return f"revision {self.revision or 'main'!r} of {self.repo_id} is not in {where} (cached: {offered}); {fix}"

    def cached_revisions(self) -> list[str] | None:
        """The branch names (``refs/``) and commit hashes (``snapshots/``) of this repository in the cache, or None
        when the cache has no such repository."""
        from huggingface_hub import constants
        from huggingface_hub.file_download import repo_folder_name

        folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=self.repo_id, repo_type="model")
        if not folder.is_dir():
            return None
        refs = sorted(p.relative_to(folder / "refs").as_posix() for p in (folder / "refs").rglob("*") if p.is_file())
        commits = sorted(p.name for p in (folder / "snapshots").glob("*") if p.is_dir())
        return refs + commits

    def _check_online(self, file: str) -> None:
        from huggingface_hub import HfApi, constants
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        try:
            info = HfApi().model_info(self.repo_id, revision=self.revision)
        except RevisionNotFoundError:
            message = f"{self.repo_id} has no revision {self.revision!r}; give a branch, tag or commit hash it has"
            raise SpecError(file, "model", message) from None
        except RepositoryNotFoundError:
            message = (
                f"{self.repo_id!r} is no local directory and no model on the Hub ({constants.ENDPOINT}); fix the id, "
                "or log in with `hf auth login` if it is private or gated"
            )
            raise SpecError(file, "model", message) from None
        except Exception as error:  # noqa: BLE001 - no network, a proxy, a timeout: the fix is the same
            cause = " ".join(str(error).split())[:160]
            message = (
                f"{self} is not in the Hub cache HF_HUB_CACHE={constants.HF_HUB_CACHE} and the Hub "
                f"({constants.ENDPOINT}) cannot be reached ({type(error).__name__}: {cause}); check the network, "
                f"or download it where there is internet (`hf download {self.repo_id}`) and set HF_HUB_OFFLINE=1"
            )
            raise SpecError(file, "model", message) from None
        files = {sibling.rfilename for sibling in info.siblings or ()}
        if "config.json" not in files:
            raise SpecError(file, "model", f"{self} has no config.json on the Hub; give a transformers model")


def locate_model(model: str, base_dir: str | Path) -> str:
    """A spec's model string as the trials receive it: an existing directory (relative to ``base_dir``) as an
    absolute path, else a Hub reference as written, else the absolute path (``validate_model`` names it).

    Example:
        >>> locate_model("Helsinki-NLP/opus-mt-en-de", "/nonexistent")
        'Helsinki-NLP/opus-mt-en-de'
    """
    path = Path(model).expanduser()
    path = path if path.is_absolute() else (Path(base_dir) / path).resolve()
    if path.is_dir() or HubModel.parse(model) is None:
        return str(path)
    return model


__all__ = ["OTHER_WEIGHTS", "HubModel", "locate_model"]
