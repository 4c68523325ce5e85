"""Settings for the headless apps: one table, read from flags and from a YAML file.

Every setting has one name: ``center_freq`` is the sink's block argument, the GRC parameter,
the YAML key ``center_freq`` (``center-freq`` is accepted too) and the flag ``--center-freq``.
Values come from the defaults, then the YAML file given with ``--config``, then the flags;
a later source overrides an earlier one. Unknown keys and bad values are errors that name
the key and what it accepts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

__all__ = ["ConfigError", "Setting", "add_settings", "resolve_settings"]


class ConfigError(ValueError):
    """A setting from a flag or the YAML file is unknown or has a bad value."""


@dataclass(frozen=True)
class Setting:
    """One setting of an app.

    Attributes:
        name: canonical name (a Python identifier); the flag is ``--`` + name with dashes.
        kind: ``str``, ``int``, ``float`` or ``bool``.
        default: value when neither the file nor a flag sets it.
        help: one line for ``--help``, with units.
        choices: accepted values, if it is a closed set.
        check: returns an error text for a bad value, or None.
        aliases: other accepted names (flag and YAML key).
        group: ``--help`` section.
    """

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    aliases: tuple[str, ...] = ()
    group: str = "options"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def accepts(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        return {bool: "true or false", int: "an integer", float: "a number",
                str: "a string"}[self.kind]

    def coerce(self, value: Any, origin: str) -> Any:
        """Convert and check a value; raise ConfigError naming ``origin`` when it is bad."""
        try:
            if self.kind is bool:
                converted = _to_bool(value)
            elif self.kind is int:
                # "1e3" is an integer; "1024.5" and "inf" are not (int() would truncate or raise).
                number = float(value) if isinstance(value, str) else value
                if isinstance(number, bool) or (isinstance(number, float)
                                                and not number.is_integer()):
                    raise ValueError
                converted = int(number)
            elif self.kind is float:
                if isinstance(value, bool):
                    raise ValueError
                converted = float(value)
            else:
                if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                    raise ValueError
                converted = str(value)
        except (TypeError, ValueError):
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


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError(value)


def add_settings(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    """Add one flag per setting; flags default to None so the file's values can show through."""
    groups: dict[str, Any] = {}
    for setting in settings:
        group = groups.get(setting.group)
        if group is None:
            group = groups[setting.group] = parser.add_argument_group(setting.group)
        names = [setting.flag, *("--" + a.replace("_", "-") for a in setting.aliases)]
        help_text = f"{setting.help} (default: {setting.default!r})"
        if setting.kind is bool:
            group.add_argument(*names, dest=setting.name, default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(*names, dest=setting.name, default=None, metavar="VALUE",
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
    by_name = _names(settings)
    values: dict[str, Any] = {}
    for key, value in data.items():
        setting = by_name.get(str(key).replace("-", "_"))
        if setting is None:
            known = ", ".join(sorted(s.name for s in settings))
            raise ConfigError(f"config file {path}: unknown key {key!r}; known keys: {known}")
        values[setting.name] = setting.coerce(value, f"config file {path}, key {key!r}")
    return values


def _names(settings: Sequence[Setting]) -> dict[str, Setting]:
    by_name: dict[str, Setting] = {}
    for setting in settings:
        for name in (setting.name, *setting.aliases):
            by_name[name.replace("-", "_")] = setting
    return by_name


def resolve_settings(
    args: argparse.Namespace, settings: Sequence[Setting], config_path: Path | None
) -> dict[str, Any]:
    """Merge defaults, the YAML file and the flags (in that order of precedence, lowest first).

    Raises:
        ConfigError: a bad key or value in the file or a flag.
    """
    values = {s.name: s.default for s in settings}
    if config_path is not None:
        values.update(load_yaml(config_path, settings))
    for setting in settings:
        flag_value = getattr(args, setting.name, None)
        if flag_value is not None:
            values[setting.name] = setting.coerce(flag_value, setting.flag)
    return values
