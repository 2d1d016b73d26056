"""TF Serving `models.config` (`--model_config_file`) for several models."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

VersionPolicy = str | int | Sequence[int] | None


def version_policy_proto(policy: VersionPolicy, model: str = "model") -> Any:
    """A `ServableVersionPolicy` proto from a short description.

    Args:
        policy: `None` or `"latest"` (newest version only, TF Serving's
            default), an int `n` (the `n` newest versions), `"all"`, or a list
            of version numbers (exactly those, e.g. for a canary).
        model: the model name, for error messages.

    Example:
    >>> version_policy_proto([1, 2]).WhichOneof("policy_choice")
    'specific'
    """
    from tensorflow_serving.config import file_system_storage_path_source_pb2 as fs_pb2

    proto = fs_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    if policy is None or policy == "latest":
        proto.latest.num_versions = 1
    elif policy == "all":
        proto.all.SetInParent()
    elif isinstance(policy, int) and not isinstance(policy, bool):
        if policy < 1:
            raise ValueError(f"Model {model!r}: latest-n policy needs n >= 1, got {policy}.")
        proto.latest.num_versions = policy
    elif (
        isinstance(policy, Sequence)
        and not isinstance(policy, str)
        and policy
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in policy)
    ):
        proto.specific.versions.extend(sorted(set(policy)))
    else:
        raise ValueError(
            f"Model {model!r}: version_policy must be 'latest', 'all', a positive int "
            f"(latest n) or a non-empty list of positive version numbers, got {policy!r}."
        )
    return proto


def models_config_proto(
    models: Mapping[str, str | os.PathLike[str]],
    version_policy: VersionPolicy | Mapping[str, VersionPolicy] = None,
    version_labels: Mapping[str, Mapping[str, int]] | None = None,
) -> Any:
    """The `ModelServerConfig` proto for several models (see `write_models_config`)."""
    from tensorflow_serving.config import model_server_config_pb2

    if not isinstance(models, Mapping) or not models:
        raise ValueError("`models` must be a non-empty dict model name -> base path.")
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"Invalid model name {name!r} (non-empty, no '/').")
        if not isinstance(base_path, (str, os.PathLike)) or not os.fspath(base_path):
            raise ValueError(f"Model {name!r}: base path must be a non-empty path.")
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = os.fspath(base_path)
        entry.model_platform = "tensorflow"
        policy = version_policy.get(name) if isinstance(version_policy, Mapping) else version_policy
        entry.model_version_policy.CopyFrom(version_policy_proto(policy, name))
        for label, version in (version_labels or {}).get(name, {}).items():
            entry.version_labels[label] = version
    extra = set(version_labels or {}) - set(models)
    if isinstance(version_policy, Mapping):
        extra |= set(version_policy) - set(models)
    if extra:
        raise ValueError(f"Policies/labels given for unknown model(s) {sorted(extra)}.")
    return config


def write_models_config(
    path: str | os.PathLike[str],
    models: Mapping[str, str | os.PathLike[str]],
    version_policy: VersionPolicy | Mapping[str, VersionPolicy] = None,
    version_labels: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """Writes a TF Serving `models.config` (text `model_config_list`).

    Serve it with `tensorflow_model_server --model_config_file=models.config`
    (docker: `--model_config_file=/models/models.config`). Base paths are
    written as given: they must be the paths *as the server sees them*
    (e.g. `/models/census_income` inside the container).

    Args:
        path: the file to write.
        models: dict model name -> base directory (holding version dirs).
        version_policy: one policy for all models or a dict model -> policy;
            see `version_policy_proto` ('latest', n, 'all', [versions]).
        version_labels: optional dict model -> {label: version}, e.g.
            `{"census_income": {"stable": 1, "canary": 2}}` (the labelled
            versions must be served by the policy).

    Returns:
        `path` as a string.

    Example:
    >>> import tempfile, os
    >>> p = write_models_config(os.path.join(tempfile.mkdtemp(), "models.config"),
    ...                         {"census_income": "/models/census_income"}, "all")
    >>> "model_config_list" in open(p).read()
    True
    """
    from google.protobuf import text_format

    config = models_config_proto(models, version_policy, version_labels)
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(config))
    # Atomic: a server polling the file (--model_config_file_poll_wait_seconds)
    # never reads a half-written config.
    os.replace(tmp, path)
    return path


def read_models_config(path: str | os.PathLike[str]) -> Any:
    """Parses a `models.config` file back into a `ModelServerConfig` proto.

    Args:
        path: the config file.

    Example:
    >>> import tempfile
    >>> p = write_models_config(os.path.join(tempfile.mkdtemp(), "models.config"),
    ...                         {"census_income": "/models/census_income"})
    >>> read_models_config(p).model_config_list.config[0].name
    'census_income'
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(os.fspath(path), encoding="utf-8") as f:
        return text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
