"""Parameters checked against the notebook's ``parameters`` cell before any kernel starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mlops_nb.exceptions import UsageError
from mlops_nb.jobs.run.params import (
    Parameter,
    check_params,
    declared_parameters,
    expand_grid,
    load_params_file,
    parse_assignments,
)

PARAMETERS_CELL = (
    "n_estimators = 100  # trees\n"
    "max_depth = 5\n"
    "learning_rate = 0.1\n"
    'name = "forest"\n'
    "use_pca = False\n"
    "layers = [64, 32]\n"
    'tag: str = "1.10"\n'
    "seed = None"
)


def write_notebook(path: Path, parameters: str | None = PARAMETERS_CELL, *, before: str = "import os") -> Path:
    """A real notebook: one ordinary code cell, then (if given) the tagged parameters cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(before))
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell("print(n_estimators)"))
    nbformat.write(nb, path)
    return path


@pytest.fixture
def train(tmp_path: Path) -> dict[str, Parameter]:
    return declared_parameters(write_notebook(tmp_path / "train.ipynb"))


def check(declared, values=None, **texts):
    return check_params(declared, values or {}, texts=texts, notebook="train.ipynb")


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ the notebook


def test_declared_parameters_in_cell_order_with_types_defaults_and_help(train):
    assert list(train) == ["n_estimators", "max_depth", "learning_rate", "name", "use_pca", "layers", "tag", "seed"]
    assert {n: p.type_name for n, p in train.items()} == {
        "n_estimators": "int",
        "max_depth": "int",
        "learning_rate": "float",
        "name": "str",
        "use_pca": "bool",
        "layers": "list",
        "tag": "str",
        "seed": "any",
    }
    assert train["n_estimators"] == Parameter("n_estimators", "int", 100, "trees", "100")
    assert train["tag"].default == "1.10" and train["layers"].default == [64, 32]
    assert train["seed"].default is None and train["seed"].accepts_none()
    assert train["max_depth"].help == "" and not train["max_depth"].accepts_none()


def test_annotations_magics_multiline_values_and_expressions(tmp_path: Path):
    cell = (
        "%matplotlib inline\n"
        "epochs: int = 3\n"
        "ratio: float = 1  # an int default for a float\n"
        "limit: int | None = 10\n"
        "cutoff: Optional[float] = None\n"
        "hidden = [\n"
        "    128,\n"
        "]  # layer sizes\n"
        "data_dir = os.path.join('data', 'raw')\n"
        "path: Path = 'out'\n"
        "required: int\n"
        'pattern = "\\d+"  # a regex: Python warns about the escape, the cell is still fine\n'
        "a = b = 2\n"
        "if epochs > 2:\n"
        "    ignored = 1\n"
    )
    got = declared_parameters(write_notebook(tmp_path / "nb.ipynb", cell))
    assert list(got) == [
        "epochs",
        "ratio",
        "limit",
        "cutoff",
        "hidden",
        "data_dir",
        "path",
        "required",
        "pattern",
        "a",
        "b",
    ]
    assert got["epochs"].type_name == "int"
    assert got["ratio"].type_name == "float" and got["ratio"].help == "an int default for a float"
    assert got["limit"].type_name == "int" and got["limit"].accepts_none()
    assert check(got, limit="None") == {"limit": None} and check(got, limit="7") == {"limit": 7}
    assert got["pattern"].default == "\\d+" and got["pattern"].type_name == "str"
    assert got["cutoff"].type_name == "float" and got["cutoff"].accepts_none()
    assert got["hidden"].default == [128] and got["hidden"].help == "layer sizes"
    # Only the kernel knows an expression's value: any type, the source as default.
    assert got["data_dir"].type_name == "any" and got["data_dir"].default == "os.path.join('data', 'raw')"
    assert got["path"].type_name == "str"  # an annotation we cannot check falls back to the default's type
    assert got["required"].describe() == "required (int, required)"
    assert got["hidden"].describe() == "hidden (list, default [128])"  # one line, whatever the layout


def test_notebook_without_parameters_cell_gives_none_and_empty_cell_gives_nothing(tmp_path: Path):
    assert declared_parameters(write_notebook(tmp_path / "plain.ipynb", None)) is None
    assert declared_parameters(write_notebook(tmp_path / "empty.ipynb", "# nothing yet")) == {}


def test_missing_unreadable_or_broken_notebook_says_what_to_do(tmp_path: Path):
    assert "not found; give the path to an .ipynb file" in refused(declared_parameters, tmp_path / "nope.ipynb")
    (tmp_path / "bad.ipynb").write_text("{not json")
    assert "bad.ipynb is not a notebook" in refused(declared_parameters, tmp_path / "bad.ipynb")
    assert "is a folder" in refused(declared_parameters, tmp_path)
    broken = write_notebook(tmp_path / "broken.ipynb", "x = 1\ny = (\n")
    message = refused(declared_parameters, broken)
    assert "parameters cell of broken.ipynb does not parse (line " in message and "fix the cell" in message


# ------------------------------------------------------------------ what the user gives


def test_parse_assignments_keeps_values_verbatim():
    assert parse_assignments(["n=10", "name=a b", "expr=x=1", "empty="]) == {
        "n": "10",
        "name": "a b",
        "expr": "x=1",
        "empty": "",
    }


@pytest.mark.parametrize("pair", ["x", "=3", "1a=2", "my-name=3", "class=1", " n=1"])
def test_parse_assignments_refuses_what_is_not_name_value(pair):
    assert f"-p expects NAME=VALUE, got {pair!r}" in refused(parse_assignments, [pair])


def test_parse_assignments_refuses_a_name_given_twice():
    message = refused(parse_assignments, ["n=10", "n=20"])
    assert "-p n is given twice ('10' and '20')" in message and "n=a,b" in message


def test_load_params_file(tmp_path: Path):
    good = tmp_path / "params.yaml"
    good.write_text("n_estimators: 200\nname: big forest\nlayers: [128, 64]\ntag: '1.10'\n")
    assert load_params_file(good) == {"n_estimators": 200, "name": "big forest", "layers": [128, 64], "tag": "1.10"}
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert load_params_file(tmp_path / "empty.yaml") == {}


def test_load_params_file_errors_name_the_file(tmp_path: Path):
    assert "parameters file" in refused(load_params_file, tmp_path / "missing.yaml")
    assert "missing.yaml' not found" in refused(load_params_file, tmp_path / "missing.yaml")

    bad = tmp_path / "bad.yaml"
    bad.write_text("n_estimators: 10\nmax_depth: [3, 5\nname: x\n")
    message = refused(load_params_file, bad)
    assert "bad.yaml' is not valid YAML at line 3" in message and "fix the file" in message

    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    assert "list.yaml' must be a mapping of names to values" in refused(load_params_file, listing)

    twice = tmp_path / "twice.yaml"
    twice.write_text("n_estimators: 10\nmax_depth: 3\nn_estimators: 20\n")
    message = refused(load_params_file, twice)
    assert "twice.yaml' is not valid YAML at line 3" in message and "'n_estimators' is given twice" in message


# ------------------------------------------------------------------ -p texts


def test_texts_need_no_quoting_and_keep_strings_verbatim(train):
    got = check(train, name="big forest", tag="1.10")
    assert got == {"name": "big forest", "tag": "1.10"}
    assert check(train, name="10")["name"] == "10"  # a str parameter: text stays text
    assert check(train, name="'quoted'")["name"] == "'quoted'"


def test_texts_converted_by_declared_type(train):
    got = check(
        train,
        n_estimators="10",
        max_depth="-3",
        learning_rate="1.10",
        use_pca="YES",
        layers="[128, 64]",
    )
    assert got == {"n_estimators": 10, "max_depth": -3, "learning_rate": 1.1, "use_pca": True, "layers": [128, 64]}
    assert check(train, learning_rate="3")["learning_rate"] == 3.0
    assert isinstance(check(train, learning_rate="3")["learning_rate"], float)
    assert check(train, learning_rate="1e-3")["learning_rate"] == 0.001
    assert check(train, layers="[1, True, 'a']")["layers"] == [1, True, "a"]  # a Python literal too
    for text, value in [("true", True), ("False", False), ("yes", True), ("NO", False), ("1", True), ("0", False)]:
        assert check(train, use_pca=text)["use_pca"] is value


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("max_depth", "1_000", 1000),
        ("max_depth", "+5", 5),
        ("max_depth", " 7 ", 7),
        ("max_depth", "007", 7),
        ("learning_rate", "1_000.5", 1000.5),
        ("learning_rate", "1E+3", 1000.0),
        ("learning_rate", "-inf", float("-inf")),
        ("learning_rate", "2", 2.0),
    ],
)
def test_numbers_are_read_as_python_int_and_float_read_them(train, name, text, value):
    """Issue 13: `-p a=1_000` was refused for an int; what int() / float() take is taken."""
    got = check(train, **{name: text})[name]
    assert got == value and type(got) is type(value)
    assert check(train, name=text)["name"] == text  # a str parameter still keeps the text as given


def test_any_parameter_takes_a_literal_or_else_the_text(train):
    assert check(train, seed="42")["seed"] == 42
    assert check(train, seed="[1, 2]")["seed"] == [1, 2]
    assert check(train, seed="None")["seed"] is None
    assert check(train, seed="hello world")["seed"] == "hello world"
    message = refused(check, train, seed="1,2")
    assert "papermill cannot pass" in message and "a value of type tuple" in message


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("max_depth", "1.5", "give a whole number"),
        ("max_depth", "1e3", "give a whole number"),
        ("max_depth", "ten", "give a whole number"),
        ("max_depth", "", "give a whole number"),
        ("learning_rate", "fast", "give a number"),
        ("use_pca", "maybe", "give true or false"),
        ("layers", "64,32", "give a list such as [1, 2]"),
        ("layers", '{"a": 1}', "give a list such as [1, 2]"),
        ("max_depth", "None", "give a whole number"),
    ],
)
def test_texts_that_do_not_fit_are_refused(train, name, text, expected):
    message = refused(check, train, **{name: text})
    type_name = train[name].type_name
    assert f"parameter {name!r} of train.ipynb takes {type_name}, got {text!r}; {expected}" in message


def test_dict_parameter_from_json_or_python(tmp_path: Path):
    declared = declared_parameters(write_notebook(tmp_path / "nb.ipynb", "opts = {'a': 1}"))
    assert check(declared, opts='{"a": 2, "b": [1]}')["opts"] == {"a": 2, "b": [1]}
    assert check(declared, opts="{'a': None}")["opts"] == {"a": None}
    assert "takes dict, got '[1]'" in refused(check, declared, opts="[1]")
    assert "the key 1 is not text" in refused(check, declared, opts="{1: 2}")


# ------------------------------------------------------------------ Python and YAML values


def test_values_that_fit_are_kept_and_ints_become_floats(train):
    got = check(train, {"learning_rate": 1, "n_estimators": 7, "use_pca": True, "layers": [8], "seed": None})
    assert got == {"n_estimators": 7, "learning_rate": 1.0, "use_pca": True, "layers": [8], "seed": None}
    assert isinstance(got["learning_rate"], float)


@pytest.mark.parametrize(
    ("name", "value", "phrases"),
    [
        ("max_depth", True, ["takes int, got True (bool)", "give a whole number"]),
        ("max_depth", 1.5, ["takes int, got 1.5 (float)"]),
        ("max_depth", "10", ["takes int, got '10' (str)", "without quotes"]),
        ("learning_rate", "1e-3", ["takes float, got '1e-3' (str)", "PyYAML reads 1e3 as text"]),
        ("name", 10, ["takes str, got 10 (int)", 'quote it: name: "..."']),
        ("tag", 1.1, ["takes str, got 1.1 (float)", 'quote it: tag: "..."']),
        ("use_pca", 1, ["takes bool, got 1 (int)", "give true or false"]),
        ("layers", (64, 32), ["takes list, got (64, 32) (tuple)"]),
        ("max_depth", None, ["takes int, got None", "None only where the default is None"]),
        ("seed", {1, 2}, ["papermill cannot pass", "a value of type set"]),
    ],
)
def test_values_that_do_not_fit_are_refused(train, name, value, phrases):
    message = refused(check, train, {name: value})
    assert f"parameter {name!r} of train.ipynb" in message
    for phrase in phrases:
        assert phrase in message


def test_yaml_file_through_check_params(tmp_path: Path, train):
    good = tmp_path / "good.yaml"
    good.write_text("n_estimators: 300\nlearning_rate: 1\nname: no quotes needed\ntag: '1.10'\n")
    assert check(train, load_params_file(good)) == {
        "n_estimators": 300,
        "learning_rate": 1.0,
        "name": "no quotes needed",
        "tag": "1.10",
    }
    # YAML reads an unquoted 1.10 as the float 1.1: refused, not silently stringified.
    bad = tmp_path / "bad.yaml"
    bad.write_text("tag: 1.10\n")
    assert 'takes str, got 1.1 (float); give text (in YAML, quote it: tag: "...")' in refused(
        check, train, load_params_file(bad)
    )


def test_texts_override_values_and_result_is_in_declared_order(train):
    got = check(train, {"max_depth": 9, "n_estimators": 1}, n_estimators="50")
    assert got == {"n_estimators": 50, "max_depth": 9}
    assert list(got) == ["n_estimators", "max_depth"]
    assert check(train) == {}


# ------------------------------------------------------------------ names


def test_unknown_name_lists_accepted_parameters_and_suggests_the_close_one(train):
    message = refused(check, train, n_estimator="10")
    assert message.startswith("unknown parameter 'n_estimator' for train.ipynb (did you mean 'n_estimators'?)")
    assert (
        "it accepts: n_estimators (int, default 100), max_depth (int, default 5), learning_rate (float, default 0.1),"
        " name (str, default 'forest'), use_pca (bool, default False), layers (list, default [64, 32]),"
        " tag (str, default '1.10'), seed (any, default None)"
    ) in message


def test_unknown_names_without_a_close_match_and_several_at_once(train):
    message = refused(check, train, {"zzz": 1})
    assert "unknown parameter 'zzz' for train.ipynb; it accepts: n_estimators (int, default 100)" in message
    message = refused(check, train, {"depth": 1}, lerning_rate="1")
    assert "unknown parameters 'depth', 'lerning_rate'" in message
    assert "'lerning_rate': did you mean 'learning_rate'?" in message


def test_notebook_without_parameters_cell_refuses_any_parameter(tmp_path: Path):
    declared = declared_parameters(write_notebook(tmp_path / "plain.ipynb", None))
    message = refused(check, declared, n_estimators="10")
    assert message.startswith("train.ipynb has no cell tagged 'parameters'; add one (papermill's convention")
    assert "n_estimators" in message
    assert "has no cell tagged 'parameters'" in refused(expand_grid, declared, {}, {"a": 1})
    assert check(declared) == {}
    empty = declared_parameters(write_notebook(tmp_path / "empty.ipynb", "# nothing yet"))
    assert "it accepts: nothing" in refused(check, empty, x="1")


# ------------------------------------------------------------------ sweeps


def test_grid_is_the_product_with_the_first_p_varying_slowest(train):
    runs = expand_grid(train, parse_assignments(["n_estimators=10,50,100", "max_depth=3, 5"]))
    assert runs == [
        {"n_estimators": 10, "max_depth": 3},
        {"n_estimators": 10, "max_depth": 5},
        {"n_estimators": 50, "max_depth": 3},
        {"n_estimators": 50, "max_depth": 5},
        {"n_estimators": 100, "max_depth": 3},
        {"n_estimators": 100, "max_depth": 5},
    ]
    reversed_order = expand_grid(train, {"max_depth": "3,5", "n_estimators": "10,50,100"})
    assert [(r["max_depth"], r["n_estimators"]) for r in reversed_order][:3] == [(3, 10), (3, 50), (3, 100)]
    assert list(reversed_order[0]) == ["n_estimators", "max_depth"]  # keys in declared order


def test_grid_elements_are_converted_and_checked(train):
    runs = expand_grid(train, {"learning_rate": "0.1,1", "name": "a,b c", "use_pca": "yes,no", "tag": "1.10"})
    assert len(runs) == 2 * 2 * 2
    assert {r["learning_rate"] for r in runs} == {0.1, 1.0}
    assert {r["name"] for r in runs} == {"a", "b c"}  # a str parameter splits on commas too
    assert {r["tag"] for r in runs} == {"1.10"}
    assert "takes int, got '1.5'" in refused(expand_grid, train, {"max_depth": "3,1.5"})


def test_grid_does_not_split_inside_brackets(train):
    runs = expand_grid(train, {"layers": "[64, 32],[128]"})
    assert runs == [{"layers": [64, 32]}, {"layers": [128]}]
    assert expand_grid(train, {"layers": "[64,32]"}) == [{"layers": [64, 32]}]
    assert expand_grid(train, {"seed": '1,"a,b",[1,2]'}) == [{"seed": 1}, {"seed": "a,b"}, {"seed": [1, 2]}]


def test_grid_refuses_an_empty_element(train):
    message = refused(expand_grid, train, {"n_estimators": "10,,50"})
    assert "-p n_estimators=10,,50 has an empty value between commas" in message
    assert "empty value" in refused(expand_grid, train, {"name": "a,"})


def test_grid_takes_yaml_lists_except_for_list_parameters(train):
    runs = expand_grid(train, {"max_depth": "3,5"}, {"n_estimators": [10, 20], "layers": [1, 2], "learning_rate": 1})
    assert len(runs) == 4
    assert [(r["n_estimators"], r["max_depth"]) for r in runs] == [(10, 3), (10, 5), (20, 3), (20, 5)]
    assert all(r["layers"] == [1, 2] and r["learning_rate"] == 1.0 for r in runs)
    assert "has an empty list of values" in refused(expand_grid, train, {}, {"n_estimators": []})
    assert "takes int, got '3' (str)" in refused(expand_grid, train, {}, {"n_estimators": [1, "3"]})
    # -p overrides the file, as in check_params.
    assert expand_grid(train, {"n_estimators": "7"}, {"n_estimators": [1, 2]}) == [{"n_estimators": 7}]


def test_grid_of_nothing_is_one_run_with_the_defaults(train):
    assert expand_grid(train, {}) == [{}]
    assert "unknown parameter 'depth'" in refused(expand_grid, train, {"depth": "1,2"})


# ------------------------------------------------------------------ cost


def test_module_imports_no_jupyter_papermill_or_yaml():
    code = (
        "import sys, mlops_nb.jobs.run.params\n"
        "heavy = ['papermill', 'nbformat', 'IPython', 'tornado', 'jupyter_client', 'yaml', 'mlflow']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
