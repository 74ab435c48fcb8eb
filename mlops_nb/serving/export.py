"""Static deployment: one model version written out as a self-contained, installable
Python package (``mlops-nb export``).

The package holds the version's MLflow model folder as package data, so once installed
it needs no tracking server, no registry and no mlops-nb: ``from <pkg> import predict``
or the ``<dist>-predict`` command (MLflow's JSON bodies or CSV in, MLflow's
``{"predictions": ...}`` out). A Dockerfile beside it installs the package with its
``serve`` extra (mlops-nb itself) and runs ``mlops-nb serve`` on the model folder.

Dependencies are the model's own ``requirements.txt``, as MLflow wrote it, pins kept,
with one substitution: ``mlflow==X`` becomes ``mlflow-skinny==X`` plus pandas and numpy,
in the ranges that ``mlflow==X`` itself requires when that is the MLflow installed here.
Loading a pyfunc model needs only what mlflow-skinny holds (the ``mlflow`` module, same
version) and pandas; full MLflow adds its tracking server and UI (Flask, SQLAlchemy,
alembic, graphene, gunicorn), matplotlib, pyarrow and docker. Measured here (2 busy
cores, a fresh virtual environment, pip 23, a scikit-learn model): with full MLflow
851 MB and 83 to 105 s; with mlflow-skinny 512 MB and 41 to 50 s (354 MB and about
30 s with ``--no-compile``); uv installs the skinny package in 2 to 3 s. MLflow's own
requirement check accepts mlflow-skinny for ``mlflow==X``: it compares the version of
the ``mlflow`` module.

The build backend is hatchling (one small wheel and four tiny dependencies; it writes
nothing into the source folder, where setuptools leaves ``build/`` and ``*.egg-info``),
told to ignore VCS ignore files: a ``.gitignore`` above DIR that ignores ``*.skops`` or
``model/`` must not drop the model from the wheel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_nb.exceptions import MlopsError, NotFoundError, UsageError
from mlops_nb.registry import get_version, model_files, parse_model_uri, resolve_alias
from mlops_nb.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

__all__ = [
    "ExportResult",
    "distribution_name",
    "export_model",
    "import_name",
    "package_requirements",
]

#: The port the exported container's server listens on.
CONTAINER_PORT = 8080
#: Where the container finds the model folder (a link into the installed package).
CONTAINER_MODEL = "/app/model"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote: which version, where, and as which package."""

    name: str
    version: str
    run_id: str | None
    alias: str | None
    folder: Path
    distribution: str
    package: str
    requirements: tuple[str, ...]
    skipped: tuple[str, ...]  # lines of requirements.txt that a package cannot declare

    @property
    def script(self) -> str:
        """The console script that predicts from JSON or CSV."""
        return f"{self.distribution}-predict"

    @property
    def summary(self) -> str:
        """One line: what was exported and where."""
        via = f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"
        run = f", run {self.run_id}" if self.run_id else ""
        return (
            f"exported {self.name} v{self.version} ({via}{run}) to {self.folder} as package "
            f"{self.distribution} {self.version}: pip install {self.folder}"
        )


def distribution_name(model_name: str) -> str:
    """``<model-name>-model`` as a valid, normalised distribution name (PEP 503): ASCII
    letters and digits, runs of anything else become one ``-``."""
    ascii_name = unicodedata.normalize("NFKD", model_name).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return f"{stem}-model" if stem else "model"


def import_name(distribution: str) -> str:
    """The import name of the package ``distribution`` installs (an identifier)."""
    name = distribution.replace("-", "_")
    return name if name[0].isalpha() else f"model_{name}"


def export_model(
    client: MlflowClient, uri: str, folder: str | os.PathLike[str], *, force: bool = False
) -> ExportResult:
    """Write the version ``uri`` names (``models:/NAME@ALIAS``, resolved once, or
    ``models:/NAME/VERSION``) into ``folder`` as an installable package.

    A non-empty ``folder`` is refused (:class:`UsageError`) unless ``force``, which
    replaces its contents. Everything is written into a temporary sibling folder that
    is renamed to ``folder`` at the end: a failure leaves ``folder`` as it was. Nothing
    is written anywhere else, and the files name no path of this machine.
    """
    name, alias, version = parse_model_uri(uri)
    target = check_target(folder, force)
    mv = resolve_alias(client, name, alias) if alias else get_version(client, name, version or "")
    source = Path(model_files(client, mv))
    if not (source / "MLmodel").is_file():
        raise NotFoundError(f"the files of {name} v{mv.version} hold no MLmodel file: it is not an MLflow model")
    distribution = distribution_name(name)
    deps, skipped = package_requirements(source / "requirements.txt")
    result = ExportResult(
        name, str(mv.version), mv.run_id, alias, target, distribution, import_name(distribution), deps, skipped
    )
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".export", dir=target.parent))
        try:
            _write_package(work, result, source)
            _move_into_place(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # gone already when it was moved into place
    except OSError as exc:
        raise MlopsError(f"cannot write the export into {target}: {exc.strerror or exc}; nothing was written") from None
    return result


def check_target(folder: str | os.PathLike[str], force: bool) -> Path:
    """The export folder, absolute: refused when it is a file, when its parent folder does
    not exist (nothing is written outside it), or when it holds anything and not ``force``."""
    target = Path(folder).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is a file: give a new or empty folder to export into")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} does not exist: create it first, or export into an existing folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise UsageError(f"{target} is not empty: give a new or empty folder, or --force to replace what it holds")
    return target


def _move_into_place(work: Path, target: Path) -> None:
    """Rename the finished ``work`` folder to ``target``; an existing ``target`` (empty, or
    replaced with --force) is moved aside first and removed only once the rename is done."""
    if not target.exists():
        os.replace(work, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / "previous")
    try:
        os.replace(work, target)
    except OSError:
        os.replace(old / "previous", target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- requirements


def package_requirements(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The package's dependencies from the model's ``requirements.txt`` (pins kept, ``-r``
    files inside the model folder followed), and the lines a package cannot declare
    (pip options such as ``-c`` or ``--index-url``): see the module docstring for
    ``mlflow==X``."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    reqs: list[Any] = []
    skipped: list[str] = []
    for line in _requirement_lines(path, path.parent, set()):
        try:
            reqs.append(Requirement(line))
        except InvalidRequirement:
            skipped.append(line)
    named = {str(canonicalize_name(r.name)) for r in reqs}
    if not named & {"mlflow", "mlflow-skinny"}:
        raise MlopsError(
            f"the model's requirements ({path.name}) do not name MLflow, which loads it: "
            "it was not logged by MLflow, or its requirements were edited; log the model again"
        )
    deps: list[str] = []
    for req in reqs:
        if canonicalize_name(req.name) in {"mlflow", "mlflow-skinny"}:
            deps.extend(_skinny(req, skip=named))
        else:
            deps.append(str(req))
    return tuple(dict.fromkeys(deps)), tuple(skipped)


def _requirement_lines(path: Path, root: Path, seen: set[Path]) -> list[str]:
    """The requirement lines of ``path``, comments and blank lines left out, ``-r FILE``
    replaced by that file's lines (only files inside ``root``: the model folder)."""
    if not path.is_file():
        raise NotFoundError(f"the model's files hold no {path.name}: log the model with MLflow 2 or later")
    seen.add(path.resolve())
    lines: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"(?:-r|--requirement)[ =]?\s*(\S+)", line)
        if match:
            nested = (path.parent / match[1]).resolve()
            if nested.is_relative_to(root.resolve()) and nested not in seen:
                lines.extend(_requirement_lines(nested, root, seen))
                continue
        lines.append(line)
    return lines


def _skinny(req: Any, skip: set[str]) -> list[str]:
    """``mlflow[extras]==X`` as ``mlflow-skinny[extras]==X`` plus pandas and numpy (those
    of them not in ``skip``: the model's requirements name them already)."""
    import importlib.metadata

    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker else ""
    out = [f"mlflow-skinny{extras}{req.specifier}{marker}"]
    ranges = {name: name for name in ("pandas", "numpy") if name not in skip}
    try:
        if req.specifier.contains(importlib.metadata.version("mlflow"), prereleases=True):
            for text in importlib.metadata.requires("mlflow") or []:
                head = re.split(r"[<>=!~;\s\[]", text, maxsplit=1)[0].lower()
                if head in ranges and "extra ==" not in text:
                    ranges[head] = text.split(";")[0].strip()
    except importlib.metadata.PackageNotFoundError:
        pass  # not installed here: any pandas and numpy, as MLflow's own ranges are unknown
    return out + [f"{r}{marker}" for r in ranges.values()]


# ---------------------------------------------------------------- the package's files


def _write_package(work: Path, result: ExportResult, source: Path) -> None:
    """Every file of the export, inside ``work``."""
    pkg = work / "src" / result.package
    pkg.mkdir(parents=True)
    copy_model(source, pkg / "model")
    mlmodel = _read_yaml(pkg / "model" / "MLmodel")
    flavors = mlmodel.get("flavors") or {}
    python = str((flavors.get("python_function") or {}).get("python_version") or "3.11")
    minor = ".".join(python.split(".")[:2])
    (pkg / "__init__.py").write_text(_module(result))
    (pkg / "__main__.py").write_text(f"from {result.package} import main\n\nraise SystemExit(main())\n")
    (work / "pyproject.toml").write_text(_pyproject(result, minor))
    (work / "Dockerfile").write_text(_dockerfile(result, minor))
    (work / ".dockerignore").write_text("build/\ndist/\n*.egg-info/\n**/__pycache__/\n")
    example = pkg / "model" / "serving_input_example.json"
    (work / "README.md").write_text(_readme(result, example.read_text() if example.is_file() else None))


def copy_model(source: Path, dest: Path) -> None:
    """Copy the MLflow model folder; the copy's MLmodel loses ``artifact_path``, which
    MLflow 3 fills with the absolute artifact location on the machine that logged it
    (loading does not read it)."""
    shutil.copytree(source, dest, symlinks=False)
    mlmodel = dest / "MLmodel"
    data = _read_yaml(mlmodel)
    if "artifact_path" in data:
        import yaml

        data.pop("artifact_path")
        mlmodel.write_text(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise MlopsError(f"the model's {path.name} file is not an MLflow model description: log the model again")
    return data


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def _pyproject(result: ExportResult, python: str) -> str:
    deps = "".join(f"    {_toml(d)},\n" for d in result.requirements)
    return f"""\
# {result.name} v{result.version}, exported by mlops-nb {__version__}.
[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = {_toml(result.distribution)}
version = {_toml(result.version)}
description = {_toml(f"The MLflow model {result.name} v{result.version}, with a predict function")}
readme = "README.md"
requires-python = ">={python}"
# The model's requirements.txt, as MLflow wrote it (mlflow as mlflow-skinny plus pandas).
dependencies = [
{deps}]

[project.optional-dependencies]
# What the Dockerfile runs: the mlops-nb model server.
serve = [{_toml(f"mlops-nb=={__version__}")}]

[project.scripts]
{result.script} = "{result.package}:main"

[tool.hatch.metadata]
# A requirement the model names by URL (pkg @ https://...) is kept as it is.
allow-direct-references = true

[tool.hatch.build]
# The model's files are package data: an ignore file above this folder must not drop them.
ignore-vcs = true

[tool.hatch.build.targets.wheel]
packages = ["src/{result.package}"]
"""


def _module(result: ExportResult) -> str:
    head = f'''\
"""The MLflow model {result.name} v{result.version}, exported by mlops-nb {__version__}.

``predict(data)`` loads the model once from the folder inside this package and returns
the pyfunc's predictions; ``{result.script}`` does the same for JSON or CSV.
"""

from __future__ import annotations

import io
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["MODEL_DIR", "MODEL_NAME", "MODEL_VERSION", "RUN_ID", "load_model", "main", "predict"]

MODEL_NAME = {result.name!r}
MODEL_VERSION = {result.version!r}
RUN_ID = {result.run_id!r}
__version__ = MODEL_VERSION
PROG = {result.script!r}

'''
    return head + _MODULE_BODY


_MODULE_BODY = '''\
#: The MLflow model folder inside this package (what MLflow and `mlops-nb serve` load).
MODEL_DIR = str(Path(__file__).resolve().parent / "model")


@lru_cache(maxsize=1)
def load_model() -> Any:
    """The model as an MLflow pyfunc model, loaded once per process."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(MODEL_DIR)


def predict(data: Any, params: dict[str, Any] | None = None) -> Any:
    """The model's predictions for ``data``: a pandas DataFrame, a list of records (one
    dict a row), or whatever else MLflow's pyfunc ``predict`` takes. Inputs are checked
    against the model's signature, as MLflow's scoring server checks them."""
    model = load_model()
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        from mlflow.pyfunc.scoring_server import infer_and_parse_data

        data = infer_and_parse_data({"dataframe_records": data}, model.metadata.get_input_schema())
    return model.predict(data, params=params)


def main(argv: list[str] | None = None) -> int:
    """The console script: predictions for a JSON body (MLflow's dataframe_split,
    dataframe_records, instances or inputs, plus params) or a CSV table, read from FILE
    or stdin, printed as MLflow's scoring server answers: {"predictions": [...]}.
    Exit 2 when the input cannot be read or parsed."""
    import argparse

    parser = argparse.ArgumentParser(prog=PROG, description=f"Predict with {MODEL_NAME} v{MODEL_VERSION}.")
    parser.add_argument("file", nargs="?", default="-", help="a .json or .csv file (default: stdin)")
    parser.add_argument(
        "--format", choices=["auto", "json", "csv"], default="auto", help="default: csv for .csv files or text "
        "not starting with { or [, else json"
    )
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"cannot read {args.file}: {exc}")
    fmt = args.format
    if fmt == "auto":
        is_json = not args.file.lower().endswith(".csv") and text.lstrip()[:1] in ("{", "[")
        fmt = "json" if is_json else "csv"
    from mlflow.pyfunc import scoring_server

    model = load_model()
    schema = model.metadata.get_input_schema()
    try:
        if fmt == "json":
            body = json.loads(text)
            if not isinstance(body, dict):
                raise ValueError(
                    "give a JSON object with one of dataframe_split, dataframe_records, instances or inputs"
                )
            data, params = scoring_server.infer_and_parse_data(body, schema), body.get("params")
        else:
            data, params = scoring_server.parse_csv_input(io.StringIO(text), schema), None
    except Exception as exc:  # MLflow's parsers raise MlflowException, json ValueError
        return _fail(f"the input is not {fmt} this model takes: {exc}")
    scoring_server.predictions_to_json(model.predict(data, params=params), sys.stdout)
    sys.stdout.write("\\n")
    return 0


def _fail(message: str) -> int:
    lines = str(message).strip().splitlines()
    print(f"{PROG}: error: {lines[0] if lines else message}", file=sys.stderr)
    return 2
'''


def _dockerfile(result: ExportResult, python: str) -> str:
    return f"""\
# {result.name} v{result.version}, exported by mlops-nb {__version__}: the model served
# by `mlops-nb serve` on port {CONTAINER_PORT}, MLflow's scoring protocol (POST /invocations).
#
# The package index pip uses in this build must hold mlops-nb=={__version__} (the `serve`
# extra of this package installs it): PyPI, or your own index, given to pip here (for
# example `ARG PIP_INDEX_URL` before the RUN line and `--build-arg PIP_INDEX_URL=...`).
#
#   docker build -t {result.distribution}:{result.version} .
#   docker run -p {CONTAINER_PORT}:{CONTAINER_PORT} -e MLOPS_NB_SERVE_TOKEN=<a secret> {result.distribution}:{result.version}
FROM python:{python}-slim

WORKDIR /app
COPY . /src
# The model folder is the installed package's: {CONTAINER_MODEL} links to it.
RUN pip install --no-cache-dir "/src[serve]" \\
    && rm -rf /src \\
    && ln -s "$(python -c 'import {result.package}; print({result.package}.MODEL_DIR)')" {CONTAINER_MODEL} \\
    && useradd --create-home model \\
    && chown model /app
USER model

EXPOSE {CONTAINER_PORT}
# Readiness: /ready answers 200 once the model is loaded and warmed (liveness: /ping).
# Both answer without the token.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}/ready', timeout=2)" || exit 1
# Bound to 0.0.0.0 the server needs a token: give it at run time, -e MLOPS_NB_SERVE_TOKEN=...
CMD ["mlops-nb", "serve", "{CONTAINER_MODEL}", "--host", "0.0.0.0", "--port", "{CONTAINER_PORT}"]
"""


def _readme(result: ExportResult, example: str | None) -> str:
    body = json.dumps(json.loads(example)) if example else '{"dataframe_records": [{"x": 1.0}]}'
    body = body.replace("'", "'\\''")  # inside the shell's single quotes below
    deps = "\n".join(f"- `{d}`" for d in result.requirements)
    skipped = (
        "\n\nNot carried over from the model's requirements.txt (pip options a package cannot declare): "
        + ", ".join(f"`{s}`" for s in result.skipped)
        if result.skipped
        else ""
    )
    run = f"run `{result.run_id}`" if result.run_id else "no source run"
    via = (
        f"\n`models:/{result.name}@{result.alias}` pointed at this version when it was exported.\n"
        if result.alias
        else ""
    )
    return f"""\
# {result.distribution} {result.version}

The MLflow model **{result.name}** version **{result.version}** ({run}), exported by
mlops-nb {__version__} as an installable Python package. It needs no tracking server: the
model's files are inside the package (`src/{result.package}/model/`, an MLflow model folder).
{via}
- `pyproject.toml`: the package `{result.distribution}` {result.version}, importable as `{result.package}`.
- `src/{result.package}/`: `predict`, the `{result.script}` command, and the model.
- `Dockerfile`: an image that serves the model with `mlops-nb serve`.

Dependencies, from the model's own requirements.txt (MLflow as mlflow-skinny, which is
all that loading a model needs, plus pandas):

{deps}{skipped}

## Install

    pip install .

## Predict

```python
from {result.package} import predict

predictions = predict(dataframe)  # or a list of records: [{{"column": value, ...}}, ...]
```

From a terminal, a JSON body as MLflow's scoring server takes it (`dataframe_split`,
`dataframe_records`, `instances` or `inputs`, plus `params`), or a CSV table, from a file
or stdin; the answer is MLflow's: `{{"predictions": [...]}}`.

    echo '{body}' | {result.script}
    {result.script} rows.csv

## Run the container

    docker build -t {result.distribution}:{result.version} .
    docker run -p {CONTAINER_PORT}:{CONTAINER_PORT} -e MLOPS_NB_SERVE_TOKEN=<a secret> {result.distribution}:{result.version}
    curl -H "Authorization: Bearer <the secret>" -H "Content-Type: application/json" \\
        -d '{body}' http://127.0.0.1:{CONTAINER_PORT}/invocations

The package index the build uses must hold mlops-nb {__version__} (the package's `serve`
extra installs it; see the Dockerfile). Bound to 0.0.0.0, the server refuses to start
without a token.

## Probes

- readiness: `GET /ready` (200 once the model is loaded and warmed, else 503); the image's
  HEALTHCHECK calls it.
- liveness: `GET /ping` (200 once a model is loaded).

Both answer without the token. `GET /health` (with it) says which version answers and
how it is doing; `GET /metrics` is Prometheus text. In Kubernetes:

```yaml
readinessProbe: {{httpGet: {{path: /ready, port: {CONTAINER_PORT}}}, periodSeconds: 5}}
livenessProbe: {{httpGet: {{path: /ping, port: {CONTAINER_PORT}}}, initialDelaySeconds: 60, periodSeconds: 10}}
```
"""
