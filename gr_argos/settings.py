# SPDX-License-Identifier: GPL-3.0-or-later
"""Settings declared once, and read from block arguments, flags and YAML files.

Every setting has one name and one declaration: a field of a frozen dataclass made with
:func:`setting`, which gives its type (the annotation), default, range check and help::

    @dataclass(frozen=True)
    class ServerConfig:
        port: int = setting(8765, "TCP port (0 = any free port)", check=in_range(0, 65535))

        def __post_init__(self) -> None:
            validate(self)

Everything else is derived from those declarations: the dataclass checks its values
(:func:`validate`), a block takes them as keyword arguments (:func:`from_arguments`, and
:func:`init_signature` for ``help()``), an app turns them into flags with ``--help`` groups
(:func:`add_flags`), YAML keys (:func:`load_yaml`) and merged values (:func:`resolve`). So
``center_freq`` is the block argument, the GRC parameter (a test holds the ``.block.yml``
files to the declarations), the YAML key ``center_freq`` (``center-freq`` works too) and the
flag ``--center-freq``. A setting's former names (``aliases``) are still accepted, with a
warning that names the new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

__all__ = [
    "ConfigError",
    "Setting",
    "add_flags",
    "at_least",
    "declared",
    "from_arguments",
    "in_range",
    "load_yaml",
    "non_negative",
    "positive",
    "rename_arguments",
    "resolve",
    "same_as",
    "setting",
    "init_signature",
    "validate",
]

log = logging.getLogger(__name__)

#: The key under which :func:`setting` stores its declaration in a dataclass field.
_METADATA_KEY = "gr_argos.setting"

Check = Callable[[Any], "str | None"]


class ConfigError(ValueError):
    """A setting from a flag, a YAML file or a block argument is unknown or has a bad value."""


@dataclass(frozen=True)
class _Declaration:
    """What :func:`setting` records beside a field's name, type and default."""

    help: str
    check: Check | None
    choices: tuple[Any, ...] | None
    aliases: tuple[str, ...]
    group: str
    convert: Callable[[Any], Any] | None = None


def same_as(cls: type, name: str, default: Any = dataclasses.MISSING) -> Any:
    """The setting ``name`` that ``cls`` declares, for another dataclass to take as well (one
    declaration: the same help, check and group), with its own ``default`` if given."""
    for field in dataclasses.fields(cls):
        if field.name == name and _METADATA_KEY in field.metadata:
            return dataclasses.field(
                default=field.default if default is dataclasses.MISSING else default,
                repr=field.repr, metadata=field.metadata)
    raise ValueError(f"{cls.__name__} declares no setting {name!r}")


def setting(default: Any, help: str, *, check: Check | None = None,
            choices: Sequence[Any] | None = None, aliases: Sequence[str] = (),
            group: str = "options", secret: bool = False,
            convert: Callable[[Any], Any] | None = None) -> Any:
    """Declare a setting as a dataclass field (the field's name and annotation complete it).

    Args:
        default: value when nothing sets it.
        help: one line for ``--help`` and the block's documentation, with units.
        check: returns what is wrong with a value (e.g. "must be at least 1"), or None.
        choices: the accepted values, when they are a closed set.
        aliases: former names, still accepted with a warning.
        group: the ``--help`` section.
        secret: a credential: left out of the dataclass's ``repr`` (and so of logs).
        convert: turns another form of a value into the setting's kind before it is
            checked (e.g. a YAML list into one text); raises ValueError for a bad one.
    """
    declaration = _Declaration(help, check, tuple(choices) if choices else None,
                               tuple(aliases), group, convert)
    return dataclasses.field(default=default, repr=not secret,
                             metadata={_METADATA_KEY: declaration})


@dataclass(frozen=True)
class Setting:
    """One declared setting, as flags, YAML and argument checks use it.

    Attributes:
        name: canonical name (a Python identifier); the flag is ``--`` + name with dashes.
        kind: ``str``, ``int``, ``float``, ``bool`` or ``tuple`` (of strings: a YAML list or
            a comma-separated string; the flag may be given more than once).
        default: value when neither a file nor a flag sets it.
        help: one line for ``--help``, with units.
        choices: accepted values, if it is a closed set.
        check: returns an error text for a bad value, or None.
        aliases: former names, accepted with a warning.
        group: ``--help`` section.
        convert: turns another form of a value (a YAML list) into ``kind`` first.
    """

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Check | None = None
    aliases: tuple[str, ...] = ()
    group: str = "options"
    convert: Callable[[Any], Any] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def accepts(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        return {bool: "true or false", int: "an integer", float: "a number",
                str: "a string", tuple: "a list of strings (comma-separated)"}[self.kind]

    def with_default(self, default: Any) -> Setting:
        """The same setting with another default (an app's own, e.g. a tuned frequency)."""
        return dataclasses.replace(self, default=default)

    def coerce(self, value: Any, origin: str) -> Any:
        """Convert and check a value; raise ConfigError naming ``origin`` when it is bad."""
        if self.convert is not None:
            try:
                value = self.convert(value)
            except ValueError as exc:
                raise ConfigError(f"{origin}: bad value for {self.name}: {exc}") from None
        try:
            converted = _convert(self.kind, value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(
                f"{origin}: bad value {value!r} for {self.name}: expected {self.accepts()}"
            ) from None
        if self.choices and converted not in self.choices:
            raise ConfigError(
                f"{origin}: bad value {value!r} for {self.name}: expected {self.accepts()}")
        problem = self.check(converted) if self.check else None
        if problem:
            raise ConfigError(f"{origin}: bad value {value!r} for {self.name}: {problem}")
        return converted


def _convert(kind: type, value: Any) -> Any:
    if kind is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(value)
        parts = [part for item in items for part in _convert(str, item).split(",")]
        return tuple(part.strip() for part in parts if part.strip())
    if kind is bool:
        return _to_bool(value)
    if kind is int:
        # "1e3" is an integer; "1024.5" and "inf" are not (int() would truncate or raise).
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, bool) or (isinstance(number, float) and not number.is_integer()):
            raise ValueError(value)
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(value)
    return str(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError(value)


# -- checks ------------------------------------------------------------------------------------

def positive(value: float) -> str | None:
    return None if value > 0 and math.isfinite(value) else "must be greater than 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 and math.isfinite(value) else "must be 0 or more"


def at_least(minimum: float) -> Check:
    """A check that a number is at least ``minimum`` (and finite)."""
    def check(value: float) -> str | None:
        return (None if value >= minimum and math.isfinite(value)
                else f"must be at least {minimum:g}")
    return check


def _number(value: float) -> str:
    """A bound as a person reads it: 1048576, not 1.04858e+06; 7.25e+09 and 0.5 as they are."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e7 else f"{value:g}"


def in_range(low: float, high: float, note: str = "") -> Check:
    """A check that a number lies in ``[low, high]``; ``note`` is added to the message."""
    def check(value: float) -> str | None:
        if low <= value <= high:
            return None
        return (f"must be between {_number(low)} and {_number(high)}"
                + (f" ({note})" if note else ""))
    return check


# -- declarations ------------------------------------------------------------------------------

def declared(*classes: type, defaults: Mapping[str, Any] | None = None,
             only: Iterable[str] | None = None,
             exclude: Iterable[str] = ()) -> tuple[Setting, ...]:
    """The settings declared by dataclasses, in declaration order.

    Args:
        classes: dataclasses whose fields were made with :func:`setting`.
        defaults: other defaults for some of them (an app's own).
        only: keep just these names (in declaration order).
        exclude: leave these names out.
    """
    wanted = None if only is None else set(only)
    skipped = set(exclude)
    settings = [item for cls in classes for item in _declared_by(cls)
                if item.name not in skipped and (wanted is None or item.name in wanted)]
    overrides = dict(defaults or {})
    unknown = set(overrides) - {s.name for s in settings}
    if unknown:
        raise ValueError(f"defaults for undeclared settings: {', '.join(sorted(unknown))}")
    return tuple(s.with_default(overrides[s.name]) if s.name in overrides else s
                 for s in settings)


_DECLARED: dict[type, tuple[Setting, ...]] = {}


def _declared_by(cls: type) -> tuple[Setting, ...]:
    """The settings ``cls`` declares (read once per class)."""
    found = _DECLARED.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _DECLARED[cls] = tuple(
            Setting(name=field.name,
                    kind=typing.get_origin(hints[field.name]) or hints[field.name],
                    default=field.default,
                    help=declaration.help, choices=declaration.choices,
                    check=declaration.check, aliases=declaration.aliases,
                    group=declaration.group, convert=declaration.convert)
            for field in dataclasses.fields(cls)
            if (declaration := field.metadata.get(_METADATA_KEY)) is not None)
    return found


def validate(instance: Any) -> None:
    """Convert and check every declared field of a frozen dataclass instance in place.

    Call it from ``__post_init__``; an int given for a float becomes a float.

    Raises:
        ConfigError: a value is of the wrong kind or out of range; the message names the
            setting and what it accepts.
    """
    for item in _declared_by(type(instance)):
        value = getattr(instance, item.name)
        converted = item.coerce(value, type(instance).__name__)
        if converted is not value:
            object.__setattr__(instance, item.name, converted)


def from_arguments(owner: str, arguments: Mapping[str, Any],
                   *classes: type) -> tuple[Any, ...]:
    """Split a block's keyword arguments among the dataclasses that declare them.

    Former names are accepted with a warning. Returns one instance per class, in order.

    Raises:
        TypeError: an argument no class declares (naming the ones there are).
        ConfigError: a bad value.
    """
    settings = declared(*classes)
    by_name = _by_name(settings)
    values: dict[str, Any] = {}
    for key, value in arguments.items():
        found = by_name.get(key)
        if found is None:
            known = ", ".join(s.name for s in settings)
            raise TypeError(f"{owner} has no setting {key!r}; its settings are: {known}")
        if found.name != key:
            _warn_renamed(owner, key, found.name)
        values[found.name] = value
    instances = []
    for cls in classes:
        names = {field.name for field in dataclasses.fields(cls)}
        try:
            instances.append(cls(**{k: v for k, v in values.items() if k in names}))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(f"{cls.__name__}: ", f"{owner}: ", 1)) from None
    return tuple(instances)


def rename_arguments(owner: str, arguments: dict[str, Any],
                     renamed: Mapping[str, str]) -> dict[str, Any]:
    """``arguments`` with a block's former argument names (``renamed``: old -> new) changed to
    the new ones, each with a warning; a value given under both names keeps the new one."""
    result = dict(arguments)
    for old, new in renamed.items():
        if old in result:
            _warn_renamed(owner, old, new)
            value = result.pop(old)
            result.setdefault(new, value)
    return result


def init_signature(*classes: type) -> inspect.Signature:
    """The signature of a block's ``__init__(self, **settings)`` taking these settings, as
    ``help()`` and ``inspect.signature`` should show it: one keyword argument each."""
    return inspect.Signature([
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY),
        *(inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=s.default,
                            annotation=s.kind.__name__) for s in declared(*classes))])


def _by_name(settings: Sequence[Setting]) -> dict[str, Setting]:
    by_name: dict[str, Setting] = {}
    for item in settings:
        for name in (item.name, *item.aliases):
            by_name[name] = item
    return by_name


def _warn_renamed(origin: str, old: str, new: str) -> None:
    log.warning("%s: setting %r is now called %r; the old name will go away", origin, old, new)


# -- flags and YAML ----------------------------------------------------------------------------

def add_flags(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    """Add one flag per setting; flags default to None so a file's values can show through."""
    groups: dict[str, Any] = {}
    for item in settings:
        group = groups.get(item.group)
        if group is None:
            group = groups[item.group] = parser.add_argument_group(item.group)
        names = [item.flag, *("--" + a.replace("_", "-") for a in item.aliases)]
        help_text = f"{item.help} (default: {item.default!r})".replace("%", "%%")  # argparse
        if item.kind is bool:
            group.add_argument(*names, dest=item.name, default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
        elif item.kind is tuple:
            group.add_argument(*names, dest=item.name, default=None, metavar="VALUE",
                               action="append", help=help_text + "; may be repeated")
        else:
            group.add_argument(*names, dest=item.name, default=None, metavar="VALUE",
                               help=help_text)


def load_yaml(path: Path, settings: Sequence[Setting]) -> dict[str, Any]:
    """Read a YAML mapping of settings; keys may be written with dashes or underscores.

    Raises:
        ConfigError: the file cannot be read, is not a mapping, or has an unknown key or a
            bad value.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value, "
                          f"got {type(data).__name__}")
    by_name = {name.replace("-", "_"): item for name, item in _by_name(settings).items()}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        item = by_name.get(name)
        if item is None:
            known = ", ".join(sorted(s.name for s in settings))
            raise ConfigError(f"config file {path}: unknown key {key!r}; known keys: {known}")
        if name != item.name:
            _warn_renamed(f"config file {path}", str(key), item.name)
        values[item.name] = item.coerce(value, f"config file {path}, key {key!r}")
    return values


def resolve(args: argparse.Namespace, settings: Sequence[Setting],
            config_path: Path | None, given: set[str] | None = None) -> dict[str, Any]:
    """Merge defaults, the YAML file and the flags (in that order of precedence, lowest first).

    Args:
        given: if passed, receives the names of the settings the file or a flag set.

    Raises:
        ConfigError: a bad key or value in the file or a flag.
    """
    values = {s.name: s.default for s in settings}
    from_file = load_yaml(config_path, settings) if config_path is not None else {}
    values.update(from_file)
    from_flags = {item.name: item.coerce(getattr(args, item.name), item.flag)
                  for item in settings if getattr(args, item.name, None) is not None}
    values.update(from_flags)
    if given is not None:
        given.update(from_file, from_flags)
    return values
