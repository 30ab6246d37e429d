"""serve's flags are generated from `ServeSettings`: one field, one flag, with the field's default and help."""

from __future__ import annotations

import argparse
import dataclasses

from structbert_lite.serve.server import add_serve_arguments
from structbert_lite.serve.settings import ServeSettings, flag_fields


def test_every_flag_is_a_setting_with_its_default():
    parser = add_serve_arguments(argparse.ArgumentParser())
    flags = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "artifact")}
    assert set(flags) == {f.name for f in flag_fields()}
    assert {"host", "port", "threads", "max_batch", "read_timeout_s"} <= set(flags)
    for field in flag_fields():
        assert flags[field.name].default == field.default and "--" + field.name.replace("_", "-") in (
            flags[field.name].option_strings)
        assert flags[field.name].help == field.metadata["help"]
    unflagged = {f.name for f in dataclasses.fields(ServeSettings)} - set(flags)
    assert unflagged == {"max_micro_batch"}  # a setting without a help text is not a flag


def test_help_names_the_defaults():
    text = add_serve_arguments(argparse.ArgumentParser(prog="serve")).format_help()
    assert "(default: 5000)" in text and "(default: 1048576)" in text and "{truncate,reject}" in text
