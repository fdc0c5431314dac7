"""Every `emb` command line of README.md and docs/*.md is checked, and the cheap ones run, so a doc cannot drift.

What counts as a command line: a line of a fenced code block (no language, bash, sh, shell, console, zsh) or of an
indented code block, split like a shell at `&&`, `||`, `;` and `|`, whose segment starts with the word `emb`.
Backslash continuations are joined, `# ...` comments dropped, and `for X in a b c; do ... done` loops expanded.

How each line is checked (`test_documented_command_is_valid`):

- `emb run ARGS`: Hydra's flags are taken out (an unknown flag fails); the overrides are composed with Hydra's compose
  API on `conf/` with the Hydra config included, as `emb run` composes them, so a misspelt group, option or key
  (`hydra.*` ones too) fails. With `-m`, Hydra's override parser expands every sweep (comma lists, ranges) and each
  job is composed. Then each entry of the `methods` list must name a method config that has its inline keys, and a
  `plugins` file must exist (relative to the checkout) unless it is a placeholder under `/path/to/`.
- Placeholders: `/path/to/conf` (in `hydra.searchpath=[file:///path/to/conf]` or `--searchpath`) stands for a config
  folder outside the checkout. The docs' YAML examples (yaml blocks whose first line is `# conf/GROUP/NAME.yaml`) are
  written into a temporary folder that is on the search path of every composition, so `method=blur_region` of
  docs/extending.md composes as it would once the reader made that file. A folder on the search path that does not
  exist fails (Hydra only warns). `hydra/launcher=submitit_*` is checked by the override parser only when the
  `[slurm]` extra is not installed. Paths such as `/data/PIE-Bench` are fine: composing does not open them.
- Every other subcommand is parsed with `benchmark.cli.build_parser()` as `emb` parses it (`key=value` arguments may
  follow options), so an unknown option fails. Their Hydra-style arguments are composed too: `emb score`'s must be
  `metrics.*` (the only ones it accepts) and compose against the default config; `emb data check/convert NAME`
  composes `dataset=NAME` with the arguments prefixed by `dataset.`; `emb report --published NAME` must name a file
  of `reports/published/`.

What runs for real (`test_the_cheap_documented_commands_run_offline`), in a temporary folder, offline: every
`emb run` line whose composed config has `model=tiny`, a generated dataset (synthetic, toyworld), built-in methods
only, no plugins and Hydra's basic launcher, with `dataset.limit` capped at 3 and its run folder moved into the temp
folder; then, in the docs' order, `emb data synthetic`, `emb data check/convert` of a generated dataset or of a folder
an earlier line wrote, and `emb score`/`emb table` on `RUN` (the first run made) or `SWEEP` (the first sweep made),
unless they need files the docs do not ship (`--metrics-file`, `--plugins`) or a metric preset with weights that are
not on this machine. Other paths are moved into the temp folder. Each must exit 0.

Checked that the test fails, one break at a time: `dataset.limt=12` in README's tour line (Hydra: "Could not
override 'dataset.limt'"), `metrics=pie_bnch` in docs/metrics.md (no such preset), `--metric-file` in
docs/extending.md (unrecognized arguments), `{p2p: {null_text_inner_stepz: 10}}` in docs/configuration.md's methods
list (unknown key), `--searchpath /path/to/conff` in docs/datasets.md (no such folder), and `--edit-type
replace_shap` in docs/outputs.md (parses, but the real `emb table` exits 2: no such edit type in the run).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import itertools
import re
import shlex
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PLACEHOLDER_PREFIX = "/path/to/"  # files and folders outside the checkout that the reader provides
PLACEHOLDER_CONF = "/path/to/conf"  # a config folder outside the checkout
RUN, SWEEP = "RUN", "SWEEP"  # a finished run's folder, a finished sweep's folder
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console", "zsh"}
EXAMPLE_YAML = re.compile(r"^# conf/(\w+)/([\w-]+)\.yaml$")
HYDRA_FLAGS = {"-m": 0, "--multirun": 0, "--cfg": 1, "-c": 1, "--resolve": 0, "--help": 0, "-h": 0, "--hydra-help": 0}
# Hydra launchers of an optional extra (`[slurm]`) → the module of their Hydra plugin
OPTIONAL_LAUNCHERS = {"submitit_slurm": "hydra_submitit_launcher", "submitit_local": "hydra_submitit_launcher"}
GENERATED_DATASETS = ("synthetic", "toyworld")  # made on the fly: nothing to download
OFFLINE_PRESETS = (None, "default", "toyworld")  # metric presets that score here (`default`: optional networks)
REAL_RUN_LIMIT = 3


# --- extraction ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeBlock:
    language: str
    lines: tuple[tuple[int, str], ...]  # (line number in the page, text)


@dataclass(frozen=True)
class DocCommand:
    page: str
    line: int
    argv: tuple[str, ...]  # the words after `emb`

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: emb {shlex.join(self.argv)}"


LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s")


def code_blocks(text: str) -> list[CodeBlock]:
    """Fenced blocks (with their language) and indented blocks (language "") of a markdown page. Indented text
    under a list item is the item's continuation, not code."""
    blocks: list[CodeBlock] = []
    fence, language, current = "", "", []
    indented: list[tuple[int, str]] = []
    previous_blank, in_list = True, False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence:
            if stripped.startswith(fence):
                blocks.append(CodeBlock(language, tuple(current)))
                fence, current = "", []
            else:
                current.append((number, line))
            continue
        if not stripped:
            previous_blank = True
            continue
        code_line = line.startswith(("    ", "\t")) and (bool(indented) or (previous_blank and not in_list))
        if code_line:
            indented.append((number, line.strip()))
            previous_blank = False
            continue
        if indented:
            blocks.append(CodeBlock("", tuple(indented)))
            indented = []
        if match := re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", line):
            fence, language = match.group(1), match.group(2).lower()
        elif LIST_ITEM.match(line):
            in_list = True
        elif not line.startswith(" ") and previous_blank:
            in_list = False
        previous_blank = False
    if indented:
        blocks.append(CodeBlock("", tuple(indented)))
    return blocks


def logical_lines(lines: tuple[tuple[int, str], ...]) -> Iterator[tuple[int, str]]:
    """Shell lines with backslash continuations joined, each with the number of its first line."""
    start, parts = 0, []
    for number, line in lines:
        if not parts:
            start = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        yield start, " ".join(parts)
        parts = []
    if parts:
        yield start, " ".join(parts)


def shell_segments(line: str) -> list[list[str]]:
    """The words of each command of a shell line (split at ; & |), quotes removed, comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|"):
            segments.append([])
        else:
            segments[-1].append(token)
    return [s for s in segments if s]


def substitute(argv: list[str], values: dict[str, str]) -> tuple[str, ...]:
    out = []
    for word in argv:
        for name, value in values.items():
            word = re.sub(rf"\$\{{{name}\}}|\${name}(?!\w)", lambda _m, v=value: v, word)
        out.append(word)
    return tuple(out)


def block_commands(block: CodeBlock) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(line number, words after `emb`) of each `emb` command of a shell block, `for` loops expanded."""
    loops: list[tuple[str, list[str]]] = []
    for number, line in logical_lines(block.lines):
        if not re.search(r"\bemb\b|^\s*(for|do|done)\b", line):
            continue  # output shown in a block, not a command
        for words in shell_segments(line):
            if words[0] == "for" and len(words) > 2 and words[2] == "in":
                loops.append((words[1], words[3:]))
                continue
            if words[0] == "done":
                loops.pop()
                continue
            if words[0] == "do":
                words = words[1:]
            if not words or words[0] != "emb":
                continue
            for combination in itertools.product(*[[(name, v) for v in values] for name, values in loops]):
                yield number, substitute(words[1:], dict(combination))


def page_commands(page: Path) -> list[DocCommand]:
    name = str(page.relative_to(ROOT))
    return [
        DocCommand(name, number, argv)
        for block in code_blocks(page.read_text())
        if block.language in SHELL_BLOCKS
        for number, argv in block_commands(block)
    ]


COMMANDS = [command for page in PAGES for command in page_commands(page)]


def example_configs(pages: list[Path]) -> dict[str, str]:
    """The docs' YAML examples by their path under conf/ (`method/blur_region.yaml`: its text)."""
    examples = {}
    for page in pages:
        for block in code_blocks(page.read_text()):
            if block.language == "yaml" and block.lines and (match := EXAMPLE_YAML.match(block.lines[0][1].strip())):
                examples[f"{match.group(1)}/{match.group(2)}.yaml"] = "\n".join(text for _, text in block.lines) + "\n"
    return examples


@pytest.fixture(scope="module")
def examples_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config folder holding the docs' YAML examples: what `/path/to/conf` stands for."""
    folder = tmp_path_factory.mktemp("doc-examples") / "conf"
    for relative, text in example_configs(PAGES).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


# --- static checks ---------------------------------------------------------------------------------------------------


def localise(value: str, examples: Path) -> str:
    """`/path/to/conf` → the folder of the docs' YAML examples."""
    return value.replace(f"file://{PLACEHOLDER_CONF}", f"file://{examples}").replace(PLACEHOLDER_CONF, str(examples))


def compose_config(overrides: list[str], examples: Path) -> DictConfig:
    """The config `emb run OVERRIDES` composes (Hydra config included), the docs' examples on the search path."""
    from hydra import compose, initialize_config_dir

    overrides = [localise(o, examples) for o in overrides]
    for folder in re.findall(r"file://([^,'\]]+)", " ".join(o for o in overrides if o.startswith("hydra.searchpath="))):
        assert Path(folder).is_dir(), f"hydra.searchpath: {folder}: no such folder"
    if not any(o.startswith("hydra.searchpath=") for o in overrides):
        overrides.append(f"hydra.searchpath=[file://{examples}]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    absent = [str(w.message) for w in caught if "is not available" in str(w.message)]
    assert not absent, f"a search path folder that does not exist: {absent[0]}"
    return cfg


def split_run_args(args: list[str]) -> tuple[bool, list[str]]:
    """(multirun?, overrides) of `emb run ARGS`; an unknown flag fails."""
    multirun, overrides, i = False, [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            assert arg in HYDRA_FLAGS, f"emb run: unknown flag {arg} (Hydra's flags: {', '.join(HYDRA_FLAGS)})"
            if arg in ("--cfg", "-c"):
                assert i + 1 < len(args) and args[i + 1] in ("job", "hydra", "all"), f"{arg} takes job|hydra|all"
            multirun |= arg in ("-m", "--multirun")
            i += 1 + HYDRA_FLAGS[arg]
            continue
        overrides.append(arg)
        i += 1
    return multirun, overrides


def without_uninstalled_launchers(overrides: list[str]) -> list[str]:
    """Drop `hydra/launcher=NAME` of an optional extra that is not installed (after Hydra's parser accepted it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    kept = []
    for override in OverridesParser.create().parse_overrides(overrides):
        name = str(override.value()) if override.key_or_group == "hydra/launcher" else ""
        if name in OPTIONAL_LAUNCHERS and importlib.util.find_spec(OPTIONAL_LAUNCHERS[name]) is None:
            assert "hydra-submitit-launcher" in (ROOT / "pyproject.toml").read_text()
            continue
        kept.append(override.input_line)
    return kept


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The override lists of a multirun's jobs, as Hydra's basic sweeper makes them (cartesian product)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(job) for job in itertools.product(*choices)]


def method_entries(cfg: DictConfig) -> list[tuple[str, dict]]:
    """(name, inline settings) of the method(s) a composed config runs."""
    if cfg.get("method") is not None:
        return [(str(cfg.method.name), {})]
    entries = []
    for entry in OmegaConf.to_container(cfg.methods):
        if isinstance(entry, str):
            entries.append((entry, {}))
        else:
            assert isinstance(entry, dict) and len(entry) == 1, f"methods: NAME or {{NAME: {{...}}}}, not {entry}"
            ((name, settings),) = entry.items()
            entries.append((name, settings or {}))
    return entries


@functools.cache
def method_keys(name: str, examples: Path) -> frozenset[str]:
    return frozenset(compose_config([f"method={name}"], examples).method)


def check_composed(cfg: DictConfig, examples: Path) -> None:
    for name, settings in method_entries(cfg):
        unknown = sorted(set(settings) - method_keys(name, examples))
        assert not unknown, f"methods: {name}: unknown key(s) {', '.join(unknown)}"
    for entry in OmegaConf.to_container(cfg.plugins) or []:
        if str(entry).endswith(".py") and not str(entry).startswith(PLACEHOLDER_PREFIX):
            assert (ROOT / entry).is_file(), f"plugins: {entry}: no such file in the checkout"


@functools.cache
def composed_run_configs(args: tuple[str, ...], examples: Path) -> list[DictConfig]:
    """The config of each job of `emb run ARGS`, checked (cached: the real runs compose the same lines again)."""
    multirun, overrides = split_run_args(list(args))
    overrides = without_uninstalled_launchers(overrides)
    jobs = sweep_jobs(overrides) if multirun else [overrides]
    configs = [compose_config(job, examples) for job in jobs]
    for cfg in configs:
        check_composed(cfg, examples)
    return configs


def parse_cli(argv: list[str]) -> argparse.Namespace | None:
    """`emb ARGV` parsed as `benchmark.cli.main` parses it; None for `--help`."""
    from benchmark.cli import build_parser

    parser, errors = build_parser(), io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args, extra = parser.parse_known_args(argv)
    except SystemExit as exit_:
        if exit_.code == 0:
            return None
        raise AssertionError(errors.getvalue().strip().splitlines()[-1]) from None
    if extra:
        takes_overrides = getattr(args, "overrides", None) is not None
        assert takes_overrides and all("=" in x for x in extra), f"unrecognized arguments: {' '.join(extra)}"
        args.overrides = [*args.overrides, *extra]
    return args


def is_path(target: str) -> bool:
    return "/" in target or target.startswith(".") or target.endswith((".json", ".jsonl", ".txt"))


def dataset_overrides(overrides: list[str]) -> list[str]:
    """`key=value` → `dataset.key=value`, as `emb data check NAME key=value` reads them."""
    out = []
    for override in overrides:
        body = override.lstrip("+~")
        prefix = override[: len(override) - len(body)]
        out.append(override if body.startswith("dataset.") else f"{prefix}dataset.{body}")
    return out


def metric_preset(overrides: list[str]) -> str | None:
    return next((o.split("=", 1)[1] for o in overrides if o.startswith("metrics=")), None)


def check_cli_args(args: argparse.Namespace, examples: Path) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for plugin in getattr(args, "plugins", None) or []:
        if plugin.endswith(".py") and not plugin.startswith(PLACEHOLDER_PREFIX):
            assert (ROOT / plugin).is_file(), f"--plugins {plugin}: no such file in the checkout"
    if args.cmd == "score":
        parsed = OverridesParser.create().parse_overrides(list(args.overrides))
        others = [o.input_line for o in parsed if o.key_or_group.split(".")[0] != "metrics"]
        assert not others, f"emb score takes metrics overrides only, not {', '.join(others)}"
        if not args.metrics_file:
            compose_config(list(args.overrides), examples)
    elif args.cmd == "data" and args.data_cmd in ("check", "convert") and not is_path(args.target):
        searchpath = [f"file://{localise(folder, examples)}" for folder in args.searchpath]
        extra = [f"hydra.searchpath=[{','.join(searchpath)}]"] if searchpath else []
        compose_config([*extra, f"dataset={args.target}", *dataset_overrides(args.overrides)], examples)
    elif args.cmd == "report" and args.published and not args.published.endswith((".yaml", ".yml")):
        assert (ROOT / "reports" / "published" / f"{args.published}.yaml").is_file(), f"--published {args.published}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.page}:{c.line}")
def test_documented_command_is_valid(command: DocCommand, examples_conf: Path) -> None:
    argv = list(command.argv)
    assert argv, f"{command}: no subcommand"
    unset = [word for word in argv if "$" in word]
    assert not unset, f"{command}: a shell variable the docs do not set: {unset[0]}"
    try:
        if argv[0] == "run":
            composed_run_configs(tuple(argv[1:]), examples_conf)
        elif (args := parse_cli(argv)) is not None:
            check_cli_args(args, examples_conf)
    except Exception as err:  # Hydra's and argparse's errors: the doc line is what the reader needs to see
        raise AssertionError(f"{command}\n  {type(err).__name__}: {err}") from err


# --- the cheap ones, for real ----------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """Where documented paths land when a command runs for real."""

    root: Path
    run: Path | None = None
    sweep: Path | None = None

    def placeholder(self, word: str) -> Path | None:
        """RUN, RUN/x, SWEEP, SWEEP/x → the run or sweep made here; None when the word is no such placeholder."""
        for name, made in ((RUN, self.run), (SWEEP, self.sweep)):
            if word == name or word.startswith(f"{name}/"):
                assert made is not None, f"{word}: the docs run no cheap {name.lower()} before this line"
                return made / word[len(name) + 1 :] if word != name else made
        return None

    def path(self, word: str) -> Path:
        """A documented path inside the sandbox (placeholders → the run or sweep made here)."""
        return self.placeholder(word) or self.root / "files" / word.lstrip("/")


def cheap_run(configs: list[DictConfig]) -> bool:
    def built_in(cfg: DictConfig) -> bool:
        return all((CONF / "method" / f"{name}.yaml").is_file() for name, _ in method_entries(cfg))

    return all(
        cfg.model.name == "tiny"
        and (cfg.dataset.get("loader") or cfg.dataset.name) == "synthetic"
        and not cfg.plugins
        and cfg.hydra.launcher._target_.endswith("BasicLauncher")
        and built_in(cfg)
        for cfg in configs
    )


def real_run_args(args: list[str], sandbox: Sandbox, multirun: bool, number: int) -> list[str]:
    """The documented `emb run` arguments with the limit capped and the run (or sweep) folder in the sandbox."""
    folder_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    out, folder, limited = [], sandbox.root / ("sweeps" if multirun else "runs") / str(number), False
    for arg in args:
        key, _, value = arg.partition("=")
        if key == "dataset.limit" and "," not in value:
            limit = REAL_RUN_LIMIT if value == "null" else min(int(value), REAL_RUN_LIMIT)
            arg, limited = f"dataset.limit={limit}", True
        if key == folder_key:
            folder = sandbox.path(value)
            continue
        out.append(arg)
    return [*out, *([] if limited else [f"dataset.limit={REAL_RUN_LIMIT}"]), f"{folder_key}={folder}"]


def real_cli_argv(args: argparse.Namespace, argv: list[str], sandbox: Sandbox) -> list[str] | None:
    """The argv to run for real inside the sandbox, or None when the line is not cheap or needs files not here."""
    if getattr(args, "plugins", None) or getattr(args, "metrics_file", None):
        return None
    if args.cmd == "data" and args.data_cmd == "synthetic":
        return [sandbox.path(word) if word == args.out_dir else word for word in argv]
    if args.cmd == "data" and args.data_cmd in ("check", "convert"):
        if args.target not in GENERATED_DATASETS and not sandbox.path(args.target).exists():
            return None
        mapped = {getattr(args, "out_dir", None)}
        if args.target not in GENERATED_DATASETS:
            mapped.add(args.target)
        return [sandbox.path(word) if word in mapped else word for word in argv]
    if args.cmd == "score" and metric_preset(args.overrides) in OFFLINE_PRESETS:
        mapped = {args.run_dir, args.out}
    elif args.cmd == "table":
        mapped = {*args.dirs, args.out}
    else:
        return None
    return [sandbox.path(word) if word in mapped else word for word in argv]


def test_the_cheap_documented_commands_run_offline(tmp_path: Path, model_cache: Path, examples_conf: Path) -> None:
    from benchmark.cli import main
    from tests.conftest import emb

    sandbox = Sandbox(tmp_path)
    (tmp_path / "files").mkdir()
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(model_cache), "OMP_NUM_THREADS": "1"}
    ran: list[str] = []
    for number, command in enumerate(c for c in COMMANDS if c.argv[:1] == ("run",)):
        configs = composed_run_configs(command.argv[1:], examples_conf)
        if not cheap_run(configs):
            continue
        multirun, _ = split_run_args(list(command.argv[1:]))
        args = real_run_args(list(command.argv[1:]), sandbox, multirun, number)
        emb("run", *args, cwd=tmp_path, env=env)
        folder = Path(args[-1].split("=", 1)[1])
        if multirun:
            sandbox.sweep = sandbox.sweep or folder
        else:
            sandbox.run = sandbox.run or folder
        ran.append("run")
    for command in COMMANDS:
        if command.argv[:1] == ("run",) or (args := parse_cli(list(command.argv))) is None:
            continue
        argv = real_cli_argv(args, list(command.argv), sandbox)
        if argv is None:
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main([str(word) for word in argv])
        assert code == 0, f"{command}\n  ran as emb {shlex.join(map(str, argv))}: exit {code}\n{out.getvalue()[-2000:]}"
        ran.append(" ".join(command.argv[:2]) if command.argv[0] == "data" else command.argv[0])
    for kind in ("run", "score", "table", "data synthetic", "data check", "data convert"):
        assert kind in ran, f"no documented `emb {kind}` line ran for real: {sorted(set(ran))}"


# --- the pages themselves --------------------------------------------------------------------------------------------


def test_extraction_reads_shell_blocks_like_a_shell() -> None:
    page = "\n".join(
        [
            "Text with `emb run inline=1` is not a block.",
            "",
            "```bash",
            "python3 -m venv .venv && pip install -e '.[dev]' && emb run   # the default run",
            "emb run method=p2p \\",
            "    method.edit=refine",
            "for t in 0.1 0.2; do",
            "  emb score RUN --out RUN/t$t metrics.metrics.0.threshold=$t",
            "done",
            "```",
            "",
            "```python",
            "emb = 1  # not shell",
            "```",
            "",
            "    emb table RUN",
            "",
            "- a list item",
            "",
            "    its continuation paragraph mentions emb run x=1",
        ]
    )
    blocks = [block for block in code_blocks(page) if block.language in SHELL_BLOCKS]
    commands = [argv for block in blocks for _, argv in block_commands(block)]
    assert commands == [
        ("run",),
        ("run", "method=p2p", "method.edit=refine"),
        ("score", "RUN", "--out", "RUN/t0.1", "metrics.metrics.0.threshold=0.1"),
        ("score", "RUN", "--out", "RUN/t0.2", "metrics.metrics.0.threshold=0.2"),
        ("table", "RUN"),
    ]


def test_the_docs_hold_commands_of_every_kind() -> None:
    kinds = {" ".join(c.argv[:2]) if c.argv[0] in ("data", "toyworld") else c.argv[0] for c in COMMANDS}
    assert {"run", "score", "table", "report", "data check", "data convert", "data synthetic"} <= kinds
    assert len(COMMANDS) > 50


def test_readme_is_short_and_holds_the_ci_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci_command}\n```" in readme  # CI runs the README's test command verbatim


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces → -)."""
    headings = re.findall(r"^#+\s+(.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_docs_page_is_linked_from_the_readme_and_every_relative_link_resolves() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"README links no {page.name}"
    for page in [*PAGES, ROOT / "data" / "README.md"]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if re.match(r"^[a-z]+://", target):
                continue
            linked = page.parent / target if target else page
            assert linked.exists(), f"{page.relative_to(ROOT)}: broken link {target}"
            if anchor:
                assert anchor in heading_anchors(linked), f"{page.relative_to(ROOT)}: no heading #{anchor} in {target}"


if __name__ == "__main__":  # list the extracted commands
    print("\n".join(map(str, COMMANDS)), file=sys.stdout)
