"""User errors at the command line: one short message that names the config key, no traceback.

A mistake in a config or an option (an invalid value, an unknown loss, backbone or class, a misspelled
key, a missing dataset or checkpoint) reaches the ``lt-noise`` user as jsonargparse's or Python's
report: dozens of lines of usage or traceback with the useful line in the middle. Here each becomes

    lt-noise fit: error: `data.init_args.noise_rate`: Expected argument `noise_rate` in [0, 1), but got 1.2
    (full details: set LT_NOISE_DEBUG=1 or add --debug)

and the command exits with :data:`CONFIG_EXIT` (2, argparse's convention for usage errors) for a config
that does not parse or instantiate, :data:`RUN_EXIT` (1) for a user error met while running (a missing
dataset file, a checkpoint of another method). Anything else (a bug) keeps its traceback. With
``LT_NOISE_DEBUG=1`` (or ``--debug`` anywhere on the command line) every error is reported in full.

- :func:`condense_parse_error` rewrites jsonargparse's message for a config that does not parse.
- :func:`describe_instantiation_error` names the config key of an exception raised while the CLI
  instantiates the model, the datamodule, the trainer or a callback.
- :func:`is_user_error` decides which run-time exceptions get the short form.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException

import lt_noise.data.modules as datamodules
import lt_noise.methods as methods
from lt_noise.data.files import ImageReadError
from lt_noise.data.modules.base import DatasetNotFoundError
from lt_noise.methods.classifier import NonFiniteLossError

__all__ = [
    "CONFIG_EXIT",
    "DEBUG_ENV",
    "RUN_EXIT",
    "ConfigError",
    "condense_parse_error",
    "debug_requested",
    "describe_instantiation_error",
    "error_message",
    "is_user_error",
    "root_cause",
]

DEBUG_ENV = "LT_NOISE_DEBUG"
DEBUG_FLAG = "--debug"
CONFIG_EXIT = 2
RUN_EXIT = 1
DEBUG_HINT = f"(full details: set {DEBUG_ENV}=1 or add {DEBUG_FLAG})"
# Validation messages of lt-noise start with this (docs/conventions.md, "Checks and their messages").
_CHECK_PREFIX = "Expected "
# Close matches offered for a misspelled option or class name.
_SUGGESTIONS = 3


class ConfigError(ValueError):
    """A config that parses but cannot be instantiated; the message names the key and the reason."""

    def __init__(self, key: str | None, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"`{key}`: {reason}" if key else reason)


def debug_requested(args: Iterable[str] = ()) -> bool:
    """Whether full error reports were asked for (``LT_NOISE_DEBUG`` set to a true value, or ``--debug``)."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return DEBUG_FLAG in list(args)


def error_message(prog: str, message: str) -> str:
    """The text printed for a user error: the program, the message and how to see the details."""
    return f"{prog}: error: {message}\n{DEBUG_HINT}\n"


# --------------------------------------------------------------------------------------------------
# Parse errors (jsonargparse)
def _parameters(class_path: str) -> list[str]:
    """Constructor parameter names of a class and of the bases its ``**kwargs`` reach."""
    try:
        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(names))


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=_SUGGESTIONS)
    return f"; did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""


def _known_classes(key: str) -> list[str]:
    """Short names of the classes a ``model`` / ``data`` class_path may name."""
    if key not in ("model", "data"):
        return []
    module = methods if key == "model" else datamodules
    base = L.LightningModule if key == "model" else L.LightningDataModule
    abstract = {"LTNoiseDataModule"}  # the base class, with no dataset of its own
    return sorted(name for name, obj in vars(module).items()
                  if inspect.isclass(obj) and issubclass(obj, base) and name not in abstract)


_PARSER_KEY = re.compile(r'Parser key "([^"]+)":')
_CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)':")
_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: --?([^\s=]+)", re.IGNORECASE)
_IMPORT_PATH = re.compile(r"Expected a dot import path string: (\S+)")
_TYPE_NAME = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
_NOISE_LINES = re.compile(r"^\s*(- )?(Expected a <class 'NoneType'>|Given value type:|Subtypes:|Errors:|Does not validate against)")


def condense_parse_error(message: str) -> str:
    """One or two lines naming the config key and the problem, from jsonargparse's parse-error message."""
    keys = _PARSER_KEY.findall(message)
    class_path = _CLASS_PATH.search(message)
    key = keys[0] if keys else None
    if key is not None and class_path is not None and len(keys) > 1:
        key = f"{key}.init_args.{keys[1]}"
    owner = class_path.group(1).rpartition(".")[2] if class_path else None
    if (match := _NOT_ACCEPTED.search(message)) is not None:
        option = match.group(1)
        full = f"{key}.init_args.{option}" if key and class_path else option
        hint = _did_you_mean(option, _parameters(class_path.group(1))) if class_path else ""
        return f"`{full}`: {owner or 'the class'} has no option `{option}`{hint}"
    if (match := _UNRECOGNIZED.search(message)) is not None:
        option = match.group(1)
        full = f"{key}.init_args.{option}" if key and class_path else option
        return f"`{full}`: unrecognised option{' of ' + owner if owner else ''}"
    if (match := _IMPORT_PATH.search(message)) is not None and key is not None:
        name = match.group(1)
        known = _known_classes(key.split(".")[0])
        listed = f" (known: {', '.join(known)}; or a full import path)" if known else ""
        return f"`{key}.class_path`: no class named {name!r}{_did_you_mean(name, known)}{listed}"
    given = re.search(r"Given value: (.*)", message)
    lines = [line.strip() for line in message.splitlines()[1 if keys else 0 :]
             if line.strip() and not _NOISE_LINES.match(line) and not _PARSER_KEY.match(line.strip())
             and not _CLASS_PATH.search(line)]
    lines = [line.removeprefix("- ") for line in lines if not line.startswith("Given value")]
    reason = "; ".join(dict.fromkeys(lines)) or message.strip().splitlines()[0]
    # "Expected a <class 'int'>. Got value: abc" -> "Expected a value of type int, but got 'abc'"
    reason = _TYPE_NAME.sub(r"a value of type \1", reason).replace("Expected a a value", "Expected a value")
    reason = re.sub(r"\. Got value: (.*)$", lambda m: f", but got {m.group(1)!r}", reason)
    if given and "got" not in reason:
        reason += f", but got {given.group(1).strip()!r}"
    return f"`{key}`: {reason}" if key else reason


# --------------------------------------------------------------------------------------------------
# Instantiation errors
def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (following ``__cause__``, then ``__context__``)."""
    seen = {id(error)}
    while True:
        nxt = error.__cause__ or error.__context__
        if nxt is None or id(nxt) in seen:
            return error
        seen.add(id(nxt))
        error = nxt


def _component(error: BaseException) -> tuple[str | None, Any]:
    """(config key, instance) of the outermost component constructor in ``error``'s traceback."""
    kinds = ((L.LightningDataModule, "data"), (L.LightningModule, "model"), (L.Trainer, "trainer"),
             (L.Callback, "trainer.callbacks"))
    traceback = error.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "__init__" else None
        for kind, key in kinds:
            if owner is not None and isinstance(owner, kind):
                return key, owner
        traceback = traceback.tb_next
    return None, None


def _argument_key(reason: str, cls: type | None, init_args: Mapping[str, Any] | None) -> str | None:
    """The init argument a validation message is about: named in backticks, or holding the value it got."""
    names = _parameters(f"{cls.__module__}.{cls.__qualname__}") if cls is not None else []
    for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_.]*)`", reason):
        if name in names or (init_args is not None and name in init_args):
            return name
    got = re.search(r"but got (.+?)\s*(\(|$)", reason)
    if got and init_args:
        wanted = got.group(1).strip()
        matches = [n for n, v in init_args.items() if v is not None and wanted in (repr(v), str(v))]
        if len(matches) == 1:
            return matches[0]
    return None


def describe_instantiation_error(error: BaseException, config: Mapping[str, Any] | None) -> ConfigError:
    """A :class:`ConfigError` naming the key of ``error``, raised while instantiating the ``config``'s
    classes (``config``: the subcommand's namespace, with ``model`` / ``data`` / ``trainer``)."""
    cause = root_cause(error)
    reason = str(cause).strip() or type(cause).__name__
    key, owner = _component(cause)
    if isinstance(cause, DatasetNotFoundError):
        return ConfigError("data.init_args.root", reason)
    if key in ("model", "data") and config is not None:
        section = config.get(key) or {}
        init_args = section.get("init_args") if hasattr(section, "get") else None
        init_args = dict(init_args) if init_args is not None else None
        argument = _argument_key(reason, type(owner), init_args)
        label = f"{key}.init_args.{argument}" if argument else f"{key} ({type(owner).__name__})"
        return ConfigError(label, reason)
    return ConfigError(key, reason)


def is_user_error(error: BaseException) -> bool:
    """Whether a run-time exception is a user error (a config, a path, a dataset, a checkpoint, or a check
    of lt-noise's with its "Expected ..." message), reported without traceback."""
    if isinstance(error, (ConfigError, DatasetNotFoundError, ImageReadError, FileNotFoundError, NonFiniteLossError,
                          MisconfigurationException)):
        return True
    return isinstance(error, ValueError) and str(error).startswith(_CHECK_PREFIX)
