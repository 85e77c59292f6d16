"""Recipe files (``--config FILE``): a YAML mapping of a command's option names to values, plus
what the recipe is and the accuracy its source reports.

The keys are checked against the command's own options (a model is built from them, so every
option has a key and there is no second list to keep), the values against each option's type.
The values become the command's defaults (click's ``default_map``), so options given on the
command line still win."""

from __future__ import annotations

import difflib
import inspect
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from ttscale.cli.console import fail
from ttscale.cli.options import RECIPE_KEY
from ttscale.cli.recipe_fields import Expected, OptionField, option_field

RESERVED: dict[str, tuple[Any, str]] = {  # recipe-only keys: (type, what an error says)
    "description": (str | None, "text"),
    "source": (str | None, "text (a citation)"),
    "expected": (list[Expected] | None, "a list of {dataset, method, n, accuracy, note}"),
}


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and the key."""


@dataclass
class Recipe:
    name: str
    path: Path
    options: dict[str, Any]  # option name -> value, as the command's defaults
    description: str | None = None
    source: str | None = None
    expected: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path.resolve())}

    def save(self, run_dir: Path) -> None:
        """Leave the recipe in the run folder, where `ttscale report` reads it."""
        from ttscale.records import write_json_atomic
        from ttscale.report.expected import RECIPE_FILE

        write_json_atomic(run_dir / RECIPE_FILE, self.to_dict())


def apply_recipe(ctx, path: Path) -> None:
    """``--config``'s callback: the recipe's options become the command's defaults."""
    try:
        recipe = read_recipe(path, command_fields(ctx.command))
    except RecipeError as error:
        fail(str(error))
    ctx.default_map = {**(ctx.default_map or {}), **recipe.options}
    ctx.meta[RECIPE_KEY] = recipe


def command_fields(command) -> dict[str, OptionField]:
    """Every option of a command, by name (the key a recipe uses), with its type read from the
    command function's annotations."""
    function = inspect.unwrap(command.callback)
    hints = typing.get_type_hints(function, include_extras=True)
    return {param.name: option_field(hints[param.name]) for param in command.params
            if param.param_type_name == "option" and param.expose_value
            and not param.is_eager and param.name in hints}


def read_recipe(path: Path, fields: dict[str, OptionField]) -> Recipe:
    data = _load_yaml(path)
    model = _recipe_model(fields)
    try:
        checked = model.model_validate(data)
    except ValidationError as error:
        raise RecipeError(f"{path}: " + "; ".join(_problems(error, data, fields))) from None
    values = checked.model_dump(exclude_none=True)
    expected = [item.model_dump(exclude_none=True) for item in checked.expected or ()]
    return Recipe(name=path.stem, path=path,
                  options={k: v for k, v in values.items() if k not in RESERVED},
                  description=checked.description, source=checked.source, expected=expected)


def _load_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: cannot be read ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"{path}: not valid YAML{where} "
                          f"({getattr(error, 'problem', None) or error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of option names to values, e.g. "
                          "`max_depth: 6`")
    return data


def _recipe_model(fields: dict[str, OptionField]) -> type[BaseModel]:
    definitions: dict[str, Any] = {name: (spec.type, None) for name, spec in fields.items()}
    definitions.update({name: (kind, None) for name, (kind, _) in RESERVED.items()})
    return create_model("Recipe", __config__=ConfigDict(extra="forbid",
                                                        coerce_numbers_to_str=True),
                        **definitions)


def _problems(error: ValidationError, data: dict, fields: dict[str, OptionField]) -> list[str]:
    """One line per bad key: unknown ones with the nearest known name, the others with what
    they take and what they got."""
    known = [*fields, *RESERVED]
    problems: list[str] = []
    for item in error.errors():
        key = str(item["loc"][0]) if item["loc"] else ""
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            line = f"unknown key '{key}'{hint}"
        elif key in fields:
            line = f"key '{key}': expected {fields[key].expected}, got {data.get(key)!r}"
        elif len(item["loc"]) == 1:
            line = f"key '{key}': expected {RESERVED[key][1]}, got {data.get(key)!r}"
        else:
            where = "".join(f"[{part + 1}]" if isinstance(part, int) else f".{part}"
                            for part in item["loc"][1:])
            message = str(item["msg"]).removeprefix("Value error, ")
            line = f"key '{key}{where}': {message}"
        if line not in problems:
            problems.append(line)
    return sorted(problems, key=lambda line: not line.startswith("unknown"))  # typos first
