"""The model-repository control plane's request bodies: what a load or unload asks for, checked whole.

A load may carry Triton's ``parameters.config``: a JSON model configuration whose fields override how the
model is served. The fields laser can apply map onto ``ModelSettings``; any other field, a value of the
wrong type, or a ``file:`` parameter (model files sent in the request) is a 400 naming it, never a 200
that silently ignored part of the request. HTTP and gRPC both go through ``load``; a load it refuses
says "failed to load" (the words Triton's clients look for) and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from laser.serve.errors import ServeError, as_serve_error

# Triton model-configuration fields a load override may set, and what each becomes.
CONFIG_FIELDS = ("name", "backend", "max_batch_size", "dynamic_batching", "version_policy", "sequence_batching")
SEQUENCE_FIELDS = ("max_sequence_idle_microseconds", "oldest", "state")
DYNAMIC_FIELDS = ("preferred_batch_size", "max_queue_delay_microseconds")


async def load(repository: Any, model: str, params: Mapping[str, Any]) -> None:
    """(Re)load ``model`` with the overrides of the request's ``params``; refusals are one ServeError."""
    try:
        await repository.load(model, load_override(model, params))
    except Exception as exc:
        err = as_serve_error(exc)
        if "failed to load" in str(err):
            raise err from None
        raise ServeError(err.status, f"model {model!r} failed to load: {err}", err.retry_after) from None


def load_override(model: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """``ModelSettings`` values from a load request's parameters; None when it carries no config."""
    files = sorted(k for k in params if k.startswith("file:"))
    if files:
        raise ServeError(400, f"load parameter(s) {files[:4]}: sending model files in a load request is not "
                              "supported by this server; put the files in the repository and load the model by name")
    unknown = sorted(set(params) - {"config"})
    if unknown:
        raise ServeError(400, f"unknown load parameter(s) {unknown[:4]}; the one supported is 'config' "
                              "(a JSON model configuration)")
    if "config" not in params:
        return None
    text = params["config"]
    if not isinstance(text, str):
        raise ServeError(400, "load parameter 'config' must be a string holding a JSON model configuration")
    try:
        cfg = json.loads(text)
    except ValueError as exc:
        raise ServeError(400, f"load parameter 'config' is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(cfg, dict):
        raise ServeError(400, "load parameter 'config' must hold a JSON object (a model configuration)")
    return settings_from_config(model, cfg)


def settings_from_config(model: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(cfg) - set(CONFIG_FIELDS))
    if unknown:
        raise ServeError(400, f"model configuration field(s) {unknown[:6]} cannot be overridden on this server; "
                              f"the fields a load may set: {list(CONFIG_FIELDS)}")
    if "name" in cfg and cfg["name"] != model:
        raise ServeError(400, f"the configuration names model {str(cfg['name'])[:40]!r}, the request loads {model!r}")
    out: dict[str, Any] = {}
    if "backend" in cfg:
        out["backend"] = _typed(cfg["backend"], str, "backend")
    if "max_batch_size" in cfg:
        out["max_batch_size"] = _typed(cfg["max_batch_size"], int, "max_batch_size")
    if "dynamic_batching" in cfg:
        db = _typed(cfg["dynamic_batching"], dict, "dynamic_batching")
        bad = sorted(set(db) - set(DYNAMIC_FIELDS))
        if bad:
            raise ServeError(400, f"dynamic_batching field(s) {bad[:4]} are not supported; supported: "
                                  f"{list(DYNAMIC_FIELDS)}")
        out["dynamic_batching"] = True
        if "preferred_batch_size" in db:
            sizes = _typed(db["preferred_batch_size"], list, "dynamic_batching.preferred_batch_size")
            out["preferred_batch_sizes"] = tuple(_typed(b, int, "dynamic_batching.preferred_batch_size[]")
                                                 for b in sizes)
        if "max_queue_delay_microseconds" in db:
            us = _typed(db["max_queue_delay_microseconds"], int, "dynamic_batching.max_queue_delay_microseconds")
            out["max_queue_delay_ms"] = us / 1000
    if "version_policy" in cfg:
        out["version_policy"] = _policy(_typed(cfg["version_policy"], dict, "version_policy"))
    if "sequence_batching" in cfg:
        out.update(_sequence(_typed(cfg["sequence_batching"], dict, "sequence_batching")))
    return out


def _sequence(sb: Mapping[str, Any]) -> dict[str, Any]:
    """Triton's sequence_batching block: the oldest strategy, idle timeout, implicit state pairs."""
    bad = sorted(set(sb) - set(SEQUENCE_FIELDS))
    if bad:
        raise ServeError(400, f"sequence_batching field(s) {bad[:4]} are not supported (laser runs the 'oldest' "
                              f"strategy with implicit state); supported: {list(SEQUENCE_FIELDS)}")
    out: dict[str, Any] = {}
    if "max_sequence_idle_microseconds" in sb:
        us = _typed(sb["max_sequence_idle_microseconds"], int, "sequence_batching.max_sequence_idle_microseconds")
        out["sequence_idle_s"] = us / 1e6
    if "oldest" in sb:
        oldest = _typed(sb["oldest"], dict, "sequence_batching.oldest")
        if set(oldest) - {"max_candidate_sequences"}:
            raise ServeError(400, "sequence_batching.oldest supports only max_candidate_sequences")
        if "max_candidate_sequences" in oldest:
            out["max_sequences"] = _typed(oldest["max_candidate_sequences"], int, "oldest.max_candidate_sequences")
    pairs = []
    for st in _typed(sb.get("state", []), list, "sequence_batching.state"):
        st = _typed(st, dict, "sequence_batching.state[]")
        if set(st) != {"input_name", "output_name"}:
            raise ServeError(400, "each sequence_batching.state entry takes input_name and output_name only (the "
                                  "data type and dims come from the model)")
        pairs.append((_typed(st["input_name"], str, "state.input_name"), _typed(st["output_name"], str,
                                                                               "state.output_name")))
    if not pairs:
        raise ServeError(400, "sequence_batching needs a 'state' list naming each state input and output")
    out["sequence_state"] = tuple(pairs)
    return out


def _policy(p: Mapping[str, Any]) -> str:
    """Triton's version_policy object as a laser policy string."""
    if len(p) != 1 or next(iter(p)) not in ("latest", "all", "specific"):
        raise ServeError(400, "version_policy must be one of {\"latest\": {\"num_versions\": N}}, {\"all\": {}}, "
                              "{\"specific\": {\"versions\": [...]}}")
    kind, arg = next(iter(p.items()))
    arg = _typed(arg, dict, f"version_policy.{kind}")
    if kind == "all":
        return "all"
    if kind == "latest":
        return f"latest:{_typed(arg.get('num_versions', 1), int, 'version_policy.latest.num_versions')}"
    versions = _typed(arg.get("versions"), list, "version_policy.specific.versions")
    return "specific:" + ",".join(str(_typed(v, int, "version_policy.specific.versions[]")) for v in versions)


def _typed(value: Any, kind: type, field: str) -> Any:
    if kind is int and isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
        return int(value)  # protobuf's JSON form writes 64-bit integers as strings; Triton's clients send "16"
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ServeError(400, f"model configuration field {field!r} must be a JSON {kind.__name__}, "
                              f"got {repr(value)[:40]}")
    return value


def unload_params(params: Mapping[str, Any]) -> None:
    """Unload parameters: only ``unload_dependents`` (a bool; laser has no ensembles, so it changes nothing)."""
    unknown = sorted(set(params) - {"unload_dependents"})
    if unknown:
        raise ServeError(400, f"unknown unload parameter(s) {unknown[:4]}; the one supported is 'unload_dependents'")
    if "unload_dependents" in params and not isinstance(params["unload_dependents"], bool):
        raise ServeError(400, "unload parameter 'unload_dependents' must be a boolean")
