"""Settings from defaults, a YAML file and flags (gr_argos/config.py), tested as plain code.

A small table of settings exercises each kind, choice list, check function and alias; the
last tests use argos-spectrum's real table and parser, which import no GNU Radio.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from gr_argos.apps.spectrum import SETTINGS as SPECTRUM_SETTINGS
from gr_argos.apps.spectrum import argument_parser
from gr_argos.config import ConfigError, Setting, add_settings, load_yaml, resolve_settings

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


def resolve(argv: list[str], config: Path | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    add_settings(parser, SETTINGS)
    return resolve_settings(parser.parse_args(argv), SETTINGS, config)


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
    assert resolve([]) == {setting.name: setting.default for setting in SETTINGS}


def test_file_overrides_defaults_and_flags_override_the_file(tmp_path: Path) -> None:
    """A YAML value replaces the default; a flag replaces the YAML value."""
    config = write_yaml(tmp_path, "center_freq: 433.92e6\nfft_size: 1024\namp: yes\n")
    from_file = resolve([], config)
    assert from_file["center_freq"] == 433.92e6
    assert from_file["fft_size"] == 1024
    assert from_file["amp"] is True
    assert from_file["samp_rate"] == 8e6
    overridden = resolve(["--fft-size", "512", "--no-amp"], config)
    assert overridden["fft_size"] == 512
    assert overridden["amp"] is False
    assert overridden["center_freq"] == 433.92e6


def test_bool_flag_has_a_negative_form() -> None:
    """--amp sets a bool setting and --no-amp clears it."""
    assert resolve(["--amp"])["amp"] is True
    assert resolve(["--no-amp"])["amp"] is False


# -- names: dashes, underscores and aliases --------------------------------------------------

def test_yaml_keys_may_use_dashes_underscores_or_aliases(tmp_path: Path) -> None:
    """center-freq, center_freq and the alias rate all name their setting in a file."""
    config = write_yaml(tmp_path, "center-freq: 50e6\nfft_size: 256\nrate: 2e6\n")
    values = load_yaml(config, SETTINGS)
    assert values == {"center_freq": 50e6, "fft_size": 256, "samp_rate": 2e6}


def test_alias_flag_sets_the_canonical_setting() -> None:
    """--rate sets samp_rate."""
    assert resolve(["--rate", "2e6"])["samp_rate"] == 2e6


def test_spectrum_rate_flag_is_an_alias_of_samp_rate() -> None:
    """argos-spectrum accepts --rate and --samp-rate for the same setting."""
    parser = argument_parser()
    for flag in ("--rate", "--samp-rate"):
        args = parser.parse_args([flag, "2e6"])
        assert resolve_settings(args, SPECTRUM_SETTINGS, None)["samp_rate"] == 2e6


def test_spectrum_step_db_comes_from_the_file_and_the_flag_checked(tmp_path: Path) -> None:
    """step_db (YAML key step_db or step-db, flag --step-db) is 0 by default, set by the
    file, overridden by the flag, and refused outside 0.01..20 dB naming the range."""
    parser = argument_parser()
    config = write_yaml(tmp_path, "encoding: uint8\nstep-db: 1.5\n")

    assert resolve_settings(parser.parse_args([]), SPECTRUM_SETTINGS, None)["step_db"] == 0.0
    assert resolve_settings(parser.parse_args([]), SPECTRUM_SETTINGS, config)["step_db"] == 1.5
    assert resolve_settings(parser.parse_args(["--step-db", "3"]), SPECTRUM_SETTINGS,
                            config)["step_db"] == 3.0
    for bad in ("0.001", "25", "-1", "nan"):
        with pytest.raises(ConfigError, match="^--step-db: bad value .* for step_db: must be "
                                              r"0 \(automatic\) or from 0.01 to 20 dB"):
            resolve_settings(parser.parse_args(["--step-db", bad]), SPECTRUM_SETTINGS, None)


# -- file errors -----------------------------------------------------------------------------

def test_unknown_yaml_key_is_named_with_the_known_keys(tmp_path: Path) -> None:
    """An unknown key raises a one-line error naming it and listing the known keys."""
    config = write_yaml(tmp_path, "center_freq: 1e6\ncentre_freq: 2e6\n")
    with pytest.raises(ConfigError) as caught:
        resolve([], config)
    message = str(caught.value)
    assert "unknown key 'centre_freq'" in message
    assert "known keys: amp, center_freq, fft_size, host, log_level, samp_rate" in message
    assert "\n" not in message


def test_bad_yaml_value_names_file_key_and_what_is_accepted(tmp_path: Path) -> None:
    """A bad value in the file names the file, the key as written and what it accepts."""
    config = write_yaml(tmp_path, "fft-size: abc\n")
    with pytest.raises(ConfigError) as caught:
        resolve([], config)
    assert str(caught.value) == (
        f"config file {config}, key 'fft-size': bad value 'abc' for fft_size: "
        "expected an integer"
    )


def test_bad_flag_value_is_an_error_even_with_a_good_file(tmp_path: Path) -> None:
    """A bad flag value raises ConfigError naming the flag."""
    config = write_yaml(tmp_path, "log_level: debug\n")
    with pytest.raises(ConfigError, match="^--log-level: bad value 'loud' for log_level"):
        resolve(["--log-level", "loud"], config)


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
        resolve([], config)


def test_empty_file_changes_nothing(tmp_path: Path) -> None:
    """An empty YAML file leaves every default in place."""
    assert resolve([], write_yaml(tmp_path, "# nothing set yet\n")) == resolve([])


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A config path that does not exist raises ConfigError naming it."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"cannot read config file {missing}: No such file"):
        resolve([], missing)
