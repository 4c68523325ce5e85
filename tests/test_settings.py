# SPDX-License-Identifier: GPL-3.0-or-later
"""Settings declared once and read from defaults, a YAML file, flags and block arguments
(gr_argos/settings.py), tested as plain code.

A small table of settings exercises each kind, choice list, check function and alias; the
last tests use argos-spectrum's real table and parser, which import no GNU Radio.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gr_argos.apps.spectrum import SETTINGS as SPECTRUM_SETTINGS
from gr_argos.apps.spectrum import argument_parser
from gr_argos.settings import (
    ConfigError,
    Setting,
    add_flags,
    at_least,
    declared,
    from_arguments,
    in_range,
    init_signature,
    load_yaml,
    non_negative,
    resolve,
    same_as,
    setting,
    validate,
)

SETTINGS: tuple[Setting, ...] = (
    Setting("center_freq", float, 100e6, "centre frequency in Hz",
            check=lambda v: None if v > 0 else "must be greater than 0"),
    Setting("samp_rate", float, 8e6, "sample rate in samples/s", aliases=("rate",)),
    Setting("fft_size", int, 2048, "bins per spectrum",
            check=lambda v: None if 16 <= v <= 65536 else "must be between 16 and 65536"),
    Setting("amp", bool, False, "RF amplifier"),
    Setting("host", str, "127.0.0.1", "address to listen on"),
    Setting("log_level", str, "info", "log level", choices=("debug", "info", "warning")),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def resolve_test(argv: list[str], config: Path | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    add_flags(parser, SETTINGS)
    return resolve(parser.parse_args(argv), SETTINGS, config)


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# -- coercion of single values ---------------------------------------------------------------

@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("fft_size", "1024", 1024),
    ("fft_size", "1e3", 1000),
    ("fft_size", 4096, 4096),
    ("fft_size", 512.0, 512),
    ("center_freq", "433.92e6", 433.92e6),
    ("center_freq", 50, 50.0),
    ("amp", True, True),
    ("amp", "yes", True),
    ("amp", "On", True),
    ("amp", "0", False),
    ("amp", "false", False),
    ("host", "0.0.0.0", "0.0.0.0"),
    ("host", 42, "42"),
    ("log_level", "debug", "debug"),
])
def test_coerce_converts_to_the_setting_kind(name: str, raw: Any, expected: Any) -> None:
    """A flag string or YAML scalar becomes a value of the setting's kind."""
    value = BY_NAME[name].coerce(raw, "--x")
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("name", "raw", "accepts"), [
    ("fft_size", "abc", "expected an integer"),
    ("fft_size", "1024.5", "expected an integer"),
    ("fft_size", 1024.5, "expected an integer"),
    ("fft_size", "inf", "expected an integer"),
    ("fft_size", True, "expected an integer"),
    ("fft_size", [1024], "expected an integer"),
    ("center_freq", "fast", "expected a number"),
    ("center_freq", False, "expected a number"),
    ("center_freq", None, "expected a number"),
    ("amp", "maybe", "expected true or false"),
    ("amp", 2, "expected true or false"),
    ("host", ["a", "b"], "expected a string"),
    ("host", True, "expected a string"),
    ("log_level", "loud", "expected one of debug, info, warning"),
])
def test_coerce_rejects_a_bad_value_naming_key_and_what_is_accepted(
    name: str, raw: Any, accepts: str
) -> None:
    """A value of the wrong kind or outside the choices raises ConfigError naming both."""
    with pytest.raises(ConfigError) as caught:
        BY_NAME[name].coerce(raw, "--origin")
    message = str(caught.value)
    assert message.startswith("--origin: ")
    assert f"for {name}: {accepts}" in message
    assert "\n" not in message


@pytest.mark.parametrize(("name", "raw", "problem"), [
    ("fft_size", "8", "must be between 16 and 65536"),
    ("fft_size", 100000, "must be between 16 and 65536"),
    ("center_freq", "-1", "must be greater than 0"),
])
def test_check_function_rejects_a_value_with_its_own_text(name: str, raw: Any, problem: str) -> None:
    """A value of the right kind that the check function refuses reports the check's text."""
    with pytest.raises(ConfigError, match=f"bad value {raw!r} for {name}: {problem}"):
        BY_NAME[name].coerce(raw, "--x")


def test_flag_and_accepts_describe_the_setting() -> None:
    """The flag is the name with dashes; accepts() lists choices or names the kind."""
    assert BY_NAME["center_freq"].flag == "--center-freq"
    assert BY_NAME["log_level"].accepts() == "one of debug, info, warning"
    assert BY_NAME["amp"].accepts() == "true or false"


# -- precedence: defaults < file < flags -----------------------------------------------------

def test_defaults_apply_when_nothing_is_given() -> None:
    """Without a file or flags every setting has its default."""
    assert resolve_test([]) == {setting.name: setting.default for setting in SETTINGS}


def test_file_overrides_defaults_and_flags_override_the_file(tmp_path: Path) -> None:
    """A YAML value replaces the default; a flag replaces the YAML value."""
    config = write_yaml(tmp_path, "center_freq: 433.92e6\nfft_size: 1024\namp: yes\n")
    from_file = resolve_test([], config)
    assert from_file["center_freq"] == 433.92e6
    assert from_file["fft_size"] == 1024
    assert from_file["amp"] is True
    assert from_file["samp_rate"] == 8e6
    overridden = resolve_test(["--fft-size", "512", "--no-amp"], config)
    assert overridden["fft_size"] == 512
    assert overridden["amp"] is False
    assert overridden["center_freq"] == 433.92e6


def test_bool_flag_has_a_negative_form() -> None:
    """--amp sets a bool setting and --no-amp clears it."""
    assert resolve_test(["--amp"])["amp"] is True
    assert resolve_test(["--no-amp"])["amp"] is False


# -- names: dashes, underscores and aliases --------------------------------------------------

def test_yaml_keys_may_use_dashes_underscores_or_aliases(tmp_path: Path) -> None:
    """center-freq, center_freq and the alias rate all name their setting in a file."""
    config = write_yaml(tmp_path, "center-freq: 50e6\nfft_size: 256\nrate: 2e6\n")
    values = load_yaml(config, SETTINGS)
    assert values == {"center_freq": 50e6, "fft_size": 256, "samp_rate": 2e6}


def test_alias_flag_sets_the_canonical_setting() -> None:
    """--rate sets samp_rate."""
    assert resolve_test(["--rate", "2e6"])["samp_rate"] == 2e6


def test_spectrum_rate_flag_is_an_alias_of_samp_rate() -> None:
    """argos-spectrum accepts --rate and --samp-rate for the same setting."""
    parser = argument_parser()
    for flag in ("--rate", "--samp-rate"):
        args = parser.parse_args([flag, "2e6"])
        assert resolve(args, SPECTRUM_SETTINGS, None)["samp_rate"] == 2e6


def test_spectrum_step_db_comes_from_the_file_and_the_flag_checked(tmp_path: Path) -> None:
    """step_db (YAML key step_db or step-db, flag --step-db) is 0 by default, set by the
    file, overridden by the flag, and refused outside 0.01..20 dB naming the range."""
    parser = argument_parser()
    config = write_yaml(tmp_path, "encoding: uint8\nstep-db: 1.5\n")

    assert resolve(parser.parse_args([]), SPECTRUM_SETTINGS, None)["step_db"] == 0.0
    assert resolve(parser.parse_args([]), SPECTRUM_SETTINGS, config)["step_db"] == 1.5
    assert resolve(parser.parse_args(["--step-db", "3"]), SPECTRUM_SETTINGS,
                            config)["step_db"] == 3.0
    for bad in ("0.001", "25", "-1", "nan"):
        with pytest.raises(ConfigError, match="^--step-db: bad value .* for step_db: must be "
                                              r"0 \(automatic\) or from 0.01 to 20 dB"):
            resolve(parser.parse_args(["--step-db", bad]), SPECTRUM_SETTINGS, None)


def test_spectrum_detect_ranges_come_as_a_yaml_list_or_a_flag_and_are_checked(
        tmp_path: Path) -> None:
    """detect_ranges: a YAML list (of texts or mappings) or the flag's compact text; a bad
    range in either names the file key or the flag and what is wrong."""
    parser = argument_parser()
    config = write_yaml(tmp_path, "detect_ranges:\n  - 433.05e6-434.79e6:watch:12\n"
                        "  - {low_freq_hz: 100e6, high_freq_hz: 100.2e6, kind: ignore}\n")
    from_file = resolve(parser.parse_args([]), SPECTRUM_SETTINGS, config)["detect_ranges"]
    assert from_file == "433.05e6-434.79e6:watch:12, 100000000.0-100200000.0:ignore"
    flag = resolve(parser.parse_args(["--detect-ranges", "1e6-2e6:ignore"]), SPECTRUM_SETTINGS,
                   config)
    assert flag["detect_ranges"] == "1e6-2e6:ignore"
    bad = write_yaml(tmp_path, "detect_ranges: [1e6-2e6:watch, 1.5e6-3e6:ignore]\n")
    with pytest.raises(ConfigError, match=r"key 'detect_ranges': .*overlap"):
        resolve(parser.parse_args([]), SPECTRUM_SETTINGS, bad)
    with pytest.raises(ConfigError, match=r"^--detect-ranges: bad value .* kind 'hear' is not"):
        resolve(parser.parse_args(["--detect-ranges", "1e6-2e6:hear"]), SPECTRUM_SETTINGS,
                None)
    item = write_yaml(tmp_path, "detect_ranges: [[1, 2]]\n")
    with pytest.raises(ConfigError, match=r"key 'detect_ranges': bad value for detect_ranges: "
                                          r"range \[1, 2\] must be a text"):
        resolve(parser.parse_args([]), SPECTRUM_SETTINGS, item)


# -- file errors -----------------------------------------------------------------------------

def test_unknown_yaml_key_is_named_with_the_known_keys(tmp_path: Path) -> None:
    """An unknown key raises a one-line error naming it and listing the known keys."""
    config = write_yaml(tmp_path, "center_freq: 1e6\ncentre_freq: 2e6\n")
    with pytest.raises(ConfigError) as caught:
        resolve_test([], config)
    message = str(caught.value)
    assert "unknown key 'centre_freq'" in message
    assert "known keys: amp, center_freq, fft_size, host, log_level, samp_rate" in message
    assert "\n" not in message


def test_bad_yaml_value_names_file_key_and_what_is_accepted(tmp_path: Path) -> None:
    """A bad value in the file names the file, the key as written and what it accepts."""
    config = write_yaml(tmp_path, "fft-size: abc\n")
    with pytest.raises(ConfigError) as caught:
        resolve_test([], config)
    assert str(caught.value) == (
        f"config file {config}, key 'fft-size': bad value 'abc' for fft_size: "
        "expected an integer"
    )


def test_bad_flag_value_is_an_error_even_with_a_good_file(tmp_path: Path) -> None:
    """A bad flag value raises ConfigError naming the flag."""
    config = write_yaml(tmp_path, "log_level: debug\n")
    with pytest.raises(ConfigError, match="^--log-level: bad value 'loud' for log_level"):
        resolve_test(["--log-level", "loud"], config)


@pytest.mark.parametrize(("text", "problem"), [
    ("center_freq: [1, 2\n", "is not valid YAML"),
    ("- center_freq\n- fft_size\n", "must be a mapping of setting: value, got list"),
    ("just words\n", "must be a mapping of setting: value, got str"),
])
def test_file_that_is_not_a_settings_mapping_is_refused(
    tmp_path: Path, text: str, problem: str
) -> None:
    """Invalid YAML or a YAML document that is not a mapping raises ConfigError."""
    config = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError, match=problem):
        resolve_test([], config)


def test_empty_file_changes_nothing(tmp_path: Path) -> None:
    """An empty YAML file leaves every default in place."""
    assert resolve_test([], write_yaml(tmp_path, "# nothing set yet\n")) == resolve_test([])


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A config path that does not exist raises ConfigError naming it."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"cannot read config file {missing}: No such file"):
        resolve_test([], missing)


# -- declarations --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    port: int = setting(8765, "TCP port", check=in_range(0, 65535), group="server")
    ping_interval_s: float = setting(20.0, "seconds between pings", check=non_negative,
                                     aliases=("ping_interval",), group="server")
    token: str = setting("", "shared secret", secret=True)
    encoding: str = setting("float32", "encoding", choices=("float32", "uint8"))

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class Other:
    bins: int = setting(2048, "bins per frame", check=at_least(1), aliases=("vlen",))

    def __post_init__(self) -> None:
        validate(self)


def test_a_declaration_gives_name_kind_default_help_and_group() -> None:
    """declared() reads the dataclass: field name and annotation, and what setting() says."""
    port, ping, token, encoding = declared(Example)
    assert (port.name, port.kind, port.default, port.help, port.group) == (
        "port", int, 8765, "TCP port", "server")
    assert (ping.kind, ping.aliases, ping.flag) == (float, ("ping_interval",),
                                                    "--ping-interval-s")
    assert encoding.choices == ("float32", "uint8")
    assert [s.name for s in declared(Example, Other, only=("bins", "port"))] == ["port", "bins"]
    assert [s.name for s in declared(Example, exclude=("token", "encoding"))] == [
        "port", "ping_interval_s"]
    assert declared(Example, defaults={"port": 9000})[0].default == 9000
    with pytest.raises(ValueError, match="undeclared settings: nope"):
        declared(Example, defaults={"nope": 1})


def test_a_dataclass_checks_and_converts_its_values_where_declared() -> None:
    """validate() converts (an int for a float) and refuses out-of-range values by name; a
    secret stays out of the repr."""
    assert Example(ping_interval_s=5).ping_interval_s == 5.0
    assert "hunter2" not in repr(Example(token="hunter2"))
    with pytest.raises(ConfigError, match="^Example: bad value 70000 for port: must be "
                                          "between 0 and 65535"):
        Example(port=70000)
    with pytest.raises(ConfigError, match="expected one of float32, uint8"):
        Example(encoding="int8")


def test_block_arguments_are_split_among_the_declaring_classes(
        caplog: pytest.LogCaptureFixture) -> None:
    """from_arguments() gives each class its own settings; a former name works with a
    warning naming the new one; an unknown argument is a TypeError listing the settings."""
    with caplog.at_level(logging.WARNING, logger="gr_argos.settings"):
        example, other = from_arguments("a_block", {"port": 0, "ping_interval": 3, "vlen": 16},
                                        Example, Other)
    assert (example.port, example.ping_interval_s, other.bins) == (0, 3.0, 16)
    assert "a_block: setting 'ping_interval' is now called 'ping_interval_s'" in caplog.text
    assert "a_block: setting 'vlen' is now called 'bins'" in caplog.text
    with pytest.raises(TypeError, match="a_block has no setting 'prot'; its settings are: "
                                        "port, ping_interval_s, token, encoding, bins"):
        from_arguments("a_block", {"prot": 1}, Example, Other)
    with pytest.raises(ConfigError, match="^a_block: bad value -1 for bins"):
        from_arguments("a_block", {"bins": -1}, Example, Other)


def test_a_block_shows_its_settings_as_its_signature() -> None:
    """init_signature() lists every setting as a keyword argument with its default."""
    class Block:
        def __init__(self, **settings: Any) -> None:
            self.settings = settings

    Block.__init__.__signature__ = init_signature(Example, Other)  # type: ignore[attr-defined]
    parameters = inspect.signature(Block).parameters
    assert list(parameters) == ["port", "ping_interval_s", "token", "encoding", "bins"]
    assert parameters["bins"].default == 2048
    assert parameters["port"].kind is inspect.Parameter.KEYWORD_ONLY


def test_a_former_name_works_in_a_file_and_as_a_flag(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A renamed setting's old YAML key is read with a warning, its old flag still works."""
    settings = declared(Example)
    parser = argparse.ArgumentParser()
    add_flags(parser, settings)
    config = write_yaml(tmp_path, "ping-interval: 7\n")
    with caplog.at_level(logging.WARNING, logger="gr_argos.settings"):
        assert resolve(parser.parse_args([]), settings, config)["ping_interval_s"] == 7.0
    assert "'ping-interval' is now called 'ping_interval_s'" in caplog.text
    assert resolve(parser.parse_args(["--ping-interval", "4"]), settings,
                   None)["ping_interval_s"] == 4.0


def _declaring_classes() -> list[type]:
    """Every dataclass in gr_argos that declares settings (modules without GNU Radio)."""
    import gr_argos.apps.common
    import gr_argos.apps.gateway
    import gr_argos.apps.spectrum
    import gr_argos.server.config
    import gr_argos.stream
    import gr_argos.sweep
    import gr_argos.zmq_transport

    found = []
    for module in (gr_argos.apps.common, gr_argos.apps.gateway, gr_argos.apps.spectrum,
                   gr_argos.server.config, gr_argos.stream, gr_argos.sweep,
                   gr_argos.zmq_transport):
        for value in vars(module).values():
            if (isinstance(value, type) and dataclasses.is_dataclass(value)
                    and value.__module__ == module.__name__ and declared(value)):
                found.append(value)
    return found


def test_no_setting_is_declared_twice() -> None:
    """Each setting name (and former name) has exactly one declaration in the package: a
    class that takes another's setting shares its declaration (same_as), never repeats it."""
    classes = _declaring_classes()
    assert {cls.__name__ for cls in classes} >= {"ServerConfig", "StreamSettings",
                                                 "PublisherSettings", "SweepSettings",
                                                 "AppSettings", "GatewaySettings",
                                                 "LogSettings"}
    declarations: dict[str, set[int]] = {}
    for cls in classes:
        for field in dataclasses.fields(cls):
            metadata = field.metadata.get("gr_argos.setting")
            if metadata is not None:
                for name in (field.name, *metadata.aliases):
                    declarations.setdefault(name, set()).add(id(metadata))
    assert {name for name, found in declarations.items() if len(found) > 1} == set()


def test_a_shared_setting_keeps_its_declaration_with_its_own_default() -> None:
    """same_as gives another class the very declaration, with another default."""
    @dataclass(frozen=True)
    class Sweepish:
        bins: int = same_as(Other, "bins", default=1024)

    (shared,) = declared(Sweepish)
    (original,) = declared(Other)
    assert (shared.default, original.default) == (1024, 2048)
    assert (shared.help, shared.check, shared.aliases) == (original.help, original.check,
                                                           original.aliases)
    with pytest.raises(ValueError, match="Other declares no setting 'nope'"):
        same_as(Other, "nope")
