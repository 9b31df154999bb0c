"""What the README documents exists: a name, a path, a command or a flag that does not
fails here (issue 12: ``kerasnets.load_torchvision_weights`` was documented and missing).

Nothing is downloaded, trained or built at full size. Checked:

* every ```python block: its ``kerasnets`` imports and ``kerasnets.<name>`` attributes
  resolve; ``create_model``/``model_info`` calls name registered models and pass
  arguments and options ``create_model`` accepts (checked against its signature and
  the family's options, without building); ``weights="imagenet"`` only where weights
  are published; a call followed by ``# <literal>`` returns that literal
  (``list_models``);
* every ```bash block: each ``scripts/*.py`` / ``kerasnets-*`` command exists, every flag
  it is given is in its ``--help``, and a model name it is given is registered;
* the prose: every `kerasnets.<name>` resolves, every `--flag` belongs to one of the
  commands, every repository path (kerasnets/, scripts/, tests/, docs/) exists.
"""

import argparse
import ast
import contextlib
import importlib
import inspect
import io
import re
import shlex
import tomllib
from functools import lru_cache
from pathlib import Path

import pytest

import kerasnets
from kerasnets.factory import check_options

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?![\w])")
CALL_CHECKS = ("create_model", "model_info")


def blocks(text, language):
    return [body for lang, body in FENCE.findall(text) if lang == language]


def prose(text):
    return FENCE.sub("", text)


# --------------------------------------------------------------------------- names

def resolve(dotted: str):
    """``kerasnets.a.b`` as an attribute chain, importing submodules where needed."""
    parts = dotted.split(".")
    obj, path = importlib.import_module(parts[0]), parts[0]
    for part in parts[1:]:
        path = f"{path}.{part}"
        if hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            obj = importlib.import_module(path)  # ModuleNotFoundError: not documented right
    return obj


def dotted_name(node):
    """``kerasnets.a.b`` for an Attribute/Name chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return inspect.Parameter.empty  # a variable: only its presence is checked


def check_call(name: str, call: ast.Call) -> list[str]:
    """Problems with a documented call of ``kerasnets.<name>`` (nothing is built)."""
    function = resolve(f"kerasnets.{name}")
    args = [literal(a) for a in call.args]
    kwargs = {k.arg: literal(k.value) for k in call.keywords if k.arg}
    try:
        bound = inspect.signature(function).bind(*args, **kwargs)
    except TypeError as error:
        return [f"kerasnets.{name}{tuple(args)}: {error}"]
    if name not in CALL_CHECKS or not isinstance(args[0], str):
        return []
    model = args[0]
    try:
        info = kerasnets.model_info(model)
        if name == "create_model":
            options = {k: v for k, v in bound.arguments.get("options", {}).items()
                       if v is not inspect.Parameter.empty}
            unknown = set(bound.arguments.get("options", {})) - set(info.options)
            if unknown:
                return [f"create_model({model!r}): no option(s) {sorted(unknown)}"]
            check_options(model, options)
            if bound.arguments.get("weights") == "imagenet" and info.weights is None:
                return [f"create_model({model!r}, weights='imagenet'): none published"]
    except ValueError as error:
        return [f"kerasnets.{name}({model!r}): {error}"]
    return []


def python_problems(source: str) -> list[str]:
    """Everything a README python block uses from kerasnets that does not exist or fit."""
    tree = ast.parse(source)
    problems = []
    for node in ast.walk(tree):
        try:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "kerasnets":
                        importlib.import_module(alias.name)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "kerasnets"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        importlib.import_module(f"{node.module}.{alias.name}")
            elif isinstance(node, ast.Attribute):
                name = dotted_name(node)
                if name and name.startswith("kerasnets."):
                    resolve(name)
            elif isinstance(node, ast.Call):
                name = dotted_name(node.func)
                if name and name.startswith("kerasnets.") and name.count(".") == 1:
                    problems += check_call(name.split(".", 1)[1], node)
        except (ImportError, AttributeError) as error:
            problems.append(f"line {node.lineno}: {type(error).__name__}: {error}")
    return problems + result_comment_problems(source)


def result_comment_problems(source: str) -> list[str]:
    """``kerasnets.list_models(...)  # ['a', 'b']``: the call returns the comment."""
    problems = []
    for line in source.splitlines():
        match = re.match(r"^(kerasnets\.list_models\(.*?\))\s*#\s*(\[.*\])\s*$", line)
        if match:
            got = eval(match.group(1), {"kerasnets": kerasnets})  # noqa: S307 (our README)
            if got != ast.literal_eval(match.group(2)):
                problems.append(f"{match.group(1)} returns {got}, README says "
                                f"{match.group(2)}")
    return problems


# --------------------------------------------------------------------------- commands

@lru_cache
def console_scripts() -> dict:
    """``kerasnets-train`` -> ``kerasnets.training.cli:main`` (pyproject.toml)."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@lru_cache
def help_flags(program: str) -> frozenset:
    """The flags a command accepts: from its ``--help``, run in this process (the CLI
    entry points), or from the ``add_argument`` calls of a script that builds its own
    parser (benchmark.py, parity.py), so that nothing heavy is imported."""
    target = console_scripts().get(program)
    if target is None:
        source = (ROOT / program).read_text()
        imported = re.search(r"from (kerasnets(?:\.\w+)*\.cli) import (\w+)", source)
        if not imported:
            flags = set()
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == \
                        "add_argument":
                    flags |= {a.value for a in node.args if isinstance(a, ast.Constant)
                              and str(a.value).startswith("--")}
            return frozenset(flags | {"--help"})
        target = f"{imported.group(1)}:{imported.group(2)}"
    module, function = target.split(":")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        getattr(importlib.import_module(module), function)(["--help"])
    return frozenset(FLAG.findall(out.getvalue()))


def commands(script: str):
    """Each command of a bash block: (program, arguments), continuation lines joined."""
    script = re.sub(r"\\\n", " ", script)
    for line in script.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;|\||[{}()]", line):
            try:
                tokens = shlex.split(part)
            except ValueError:  # an unbalanced quote inside JSON spread over lines
                tokens = part.split()
            for i, token in enumerate(tokens):
                name = Path(token).name
                if re.fullmatch(r"scripts/\w+\.py", token) or (
                        name.startswith("kerasnets-") and name in console_scripts()) or \
                        re.fullmatch(r"kerasnets-\w+", token):
                    program = token if token.startswith("scripts/") else name
                    yield program, tokens[i + 1:]
                    break


def command_problems(program: str, args: list[str]) -> list[str]:
    if program.startswith("scripts/"):
        if not (ROOT / program).is_file():
            return [f"{program} does not exist"]
    elif program not in console_scripts():
        return [f"{program} is not a console script of pyproject.toml"]
    accepted = help_flags(program)
    problems = [f"{program} has no flag {flag}" for flag in
                (a.split("=", 1)[0] for a in args if a.startswith("--"))
                if flag not in accepted]
    # the model a train/summary command names must be registered
    if Path(program).stem.split("-")[-1] in ("train", "summary"):
        positional = [a for a in args if not a.startswith("-")]
        previous = {a: args[i - 1] if i else "" for i, a in enumerate(args)}
        model = next((a for a in positional if not previous[a].startswith("--")), None)
        if model and re.fullmatch(r"[a-z][a-z0-9_]*", model) and \
                model not in kerasnets.list_models():
            problems.append(f"{program} {model}: no such model")
    return problems


# --------------------------------------------------------------------------- prose

def prose_problems(text: str) -> list[str]:
    problems = []
    spans = re.findall(r"`([^`\n]+)`", prose(text))
    all_flags = set().union(*(help_flags(p) for p in
                              [*console_scripts(), "scripts/benchmark.py",
                               "scripts/parity.py", "scripts/experiment.py",
                               "kerasnets/benchmarks/alternating.py"]))
    for span in spans:
        for name in re.findall(r"(?<![\w/])kerasnets(?:\.\w+)+", span):
            try:
                resolve(name)
            except (ImportError, AttributeError) as error:
                problems.append(f"`{span}`: {error}")
        for flag in FLAG.findall(span):
            if flag not in all_flags:
                problems.append(f"`{span}`: no command has the flag {flag}")
        for path in re.findall(r"(?<![\w./-])((?:kerasnets|scripts|tests|docs)/[\w./-]+)",
                               span):
            if "<" not in span and not (ROOT / path.rstrip("/.")).exists():
                problems.append(f"`{span}`: {path} does not exist")
    for path in re.findall(r"\]\((?!https?:)([^)#]+)\)", text):  # relative links
        if not (ROOT / path).exists():
            problems.append(f"link to {path}: does not exist")
    return problems


# --------------------------------------------------------------------------- tests

def test_readme_python_blocks_use_only_what_exists():
    text = README.read_text()
    sources = blocks(text, "python")
    assert sources, "the README has no python block any more?"
    problems = [p for source in sources for p in python_problems(source)]
    assert not problems, "\n".join(problems)


def test_readme_commands_exist_and_take_their_flags():
    found = [(p, a) for script in blocks(README.read_text(), "bash") for p, a in
             commands(script)]
    assert {"scripts/train.py", "kerasnets-train"} <= {p for p, _ in found}
    problems = [p for program, args in found for p in command_problems(program, args)]
    assert not problems, "\n".join(problems)


def test_readme_prose_names_flags_and_paths_exist():
    problems = prose_problems(README.read_text())
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_does_not_exist():
    """The checks above would fail on a README that names something missing."""
    assert python_problems("import kerasnets\nkerasnets.load_torchvision_weights\n") == []
    assert python_problems("import kerasnets\nkerasnets.no_such_function(1)\n")
    assert python_problems("from kerasnets import no_such_name\n")
    assert python_problems("from kerasnets.no_such_module import x\n")
    assert python_problems("kerasnets.create_model('resnet51')\n")
    assert python_problems("kerasnets.create_model('resnet18', small_input='yes')\n")
    assert python_problems("kerasnets.create_model('resnet18', depth=3)\n")
    assert python_problems("kerasnets.create_model('lenet5', weights='imagenet')\n")
    assert python_problems("kerasnets.create_model('resnet18', num_class=3)\n")
    assert python_problems("kerasnets.list_models('vgg11*')  # ['vgg11']\n")
    assert python_problems("kerasnets.list_models('vgg11*')  # ['vgg11', 'vgg11_bn']\n") == []
    bash = "python scripts/train.py resnet18 --epochs 2 --no-such-flag 3\n" \
           "python scripts/nope.py\nkerasnets-train resnet99\n"
    problems = [p for prog, args in commands(bash) for p in command_problems(prog, args)]
    assert any("--no-such-flag" in p for p in problems)
    assert any("scripts/nope.py does not exist" in p for p in problems)
    assert any("resnet99: no such model" in p for p in problems)
    assert prose_problems("see `kerasnets.nothing_here` and `--no-such-flag` in "
                          "`kerasnets/nothing.py`\n") and len(prose_problems(
                              "see `kerasnets.nothing_here` and `--no-such-flag` in "
                              "`kerasnets/nothing.py`\n")) == 3


def test_help_flags_reads_argparse():
    assert {"--epochs", "--data-dir", "--model-option", "--resume"} <= help_flags(
        "scripts/train.py")
    assert "--quick" in help_flags("scripts/benchmark.py")
    assert isinstance(argparse.ArgumentParser, type)  # argparse stays the parser here


# --------------------------------------------------------------------------- running

@pytest.fixture
def fake_published_weights(tmp_path, monkeypatch):
    """torchvision's published resnet50 weights without a network: a random resnet18
    checkpoint in a private torch.hub cache, named (as torchvision names its files)
    after its own sha256 prefix, registered as resnet18's weights."""
    import torchvision

    from tests.helpers import publish_fake_resnet18_weights

    publish_fake_resnet18_weights(tmp_path, monkeypatch, torchvision.models.resnet18().state_dict())


def test_readme_python_blocks_run(fake_published_weights):
    """Every ```python block, pasted as a user would (in order, one namespace), runs; with
    small inputs: ResNet-50 becomes ResNet-18 (same family, same calls), and its ImageNet
    weights a local checkpoint."""
    namespace = {}
    for body in blocks(README.read_text(), "python"):
        small = body.replace("resnet50", "resnet18")
        exec(compile(small, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    assert namespace["model"].output_shape == (None, 10)
