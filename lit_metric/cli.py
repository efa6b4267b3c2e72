"""The ``lit-metric`` command line: LightningCLI with model and data in subclass mode.

``lit-metric fit --config configs/digits_triplet.yaml`` (also ``python -m lit_metric``); any
LightningModule / LightningDataModule importable by ``class_path`` works, losses and miners are
``class_path``/``init_args`` objects.

Reliability: a config error (unknown ``class_path``, argument or key) ends with the valid choices and the close
matches (:class:`MetricArgumentParser`); checkpoints given by ``--ckpt_path`` load through
:class:`~lit_metric.checkpoint.CheckedCheckpointIO` (a truncated or corrupt file is a clear error naming it).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Sequence
from typing import Any, NoReturn

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_metric.checkpoint import CheckedCheckpointIO

__all__ = [
    "LoggedConfigCallback",
    "MetricArgumentParser",
    "MetricCLI",
    "config_hints",
    "console_main",
    "flatten_config",
    "main",
]

# where the valid choices for a class_path come from (each module's __all__)
_CHOICE_MODULES = (
    "lit_metric",
    "lit_metric.losses",
    "lit_metric.miners",
    "lit_metric.distances",
    "lit_metric.backbones",
    "lit_metric.data",
    "lit_metric.callbacks",
    "torch.optim",
    "torch.optim.lr_scheduler",
    "lightning.pytorch.callbacks",
    "lightning.pytorch.loggers",
)


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _subclass_choices(base: type) -> list[str]:
    found: dict[type, str] = {}
    for module_name in _CHOICE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr, None)
            if isinstance(obj, type) and issubclass(obj, base) and obj is not base and not inspect.isabstract(obj):
                found.setdefault(obj, f"{module_name}.{attr}")
    return sorted(found.values())


def _suggest(bad: str, choices: Sequence[str], what: str, key: Any = None) -> str:
    names = {(key(c) if key else c): c for c in choices}
    close = [names[n] for n in difflib.get_close_matches(bad, list(names), n=3, cutoff=0.6)]
    shown = ", ".join(choices[:40]) + (f", … ({len(choices)} in all)" if len(choices) > 40 else "")
    return (f"Did you mean {' or '.join(close)}? " if close else "") + f"Valid {what}: {shown}."


def _module_classes(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    return sorted(f"{module_name}.{n}" for n in names if isinstance(getattr(module, n, None), type))


def config_hints(message: str, parser: Any = None) -> str:
    """Hints for a jsonargparse error ``message``: the valid choices and close matches of an unknown
    ``class_path``, ``init_args`` argument or config key (empty when the message is of another kind).

    Example:
        >>> lines = ["Subtypes: [<class 'lit_metric.miners.base.Miner'>]",
        ...          "- Import path my.TripletMine does not correspond to a subclass of Miner"]
        >>> print(config_hints(chr(10).join(lines)).strip())  # doctest: +ELLIPSIS
        Hint: 'my.TripletMine' is not a valid class_path here. Did you mean lit_metric.miners.TripletMiner...
    """
    hints: list[str] = []
    base: type | None = None
    lines = message.splitlines()
    for i, line in enumerate(lines):
        if subtypes := re.search(r"Subtypes: \[<class '([\w.]+)'>", line):
            base = _import(subtypes.group(1))
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        given = re.search(r"Problem with given class_path '([\w.]+)':", line)
        bad_class, kind = None, base
        if given and re.search(r"has no attribute|No module named", nxt):
            bad_class = given.group(1)
        elif m := re.search(r"Import path ([\w.]+) does not correspond to a subclass", line):
            bad_class = m.group(1)
        elif m := re.search(r"Expected a dot import path string: (\S+)", line):
            bad_class = m.group(1)
        elif m := re.search(r"Callable\[\[.*?\], ([\w.]+)\] expects a function.*module '([\w.]+)' has no attribute '(\w+)'", line):
            bad_class, kind = f"{m.group(2)}.{m.group(3)}", _import(m.group(1))  # optimizer callables
        elif m := re.search(r"expects a function or a callable class: module '([\w.]+)' has no attribute '(\w+)'", line):
            bad_class, kind = f"{m.group(1)}.{m.group(2)}", None
        if bad_class is not None:
            choices = _subclass_choices(kind) if isinstance(kind, type) else []
            what = f"{kind.__name__} classes" if choices and isinstance(kind, type) else ""
            if not choices and "." in bad_class:
                choices, what = _module_classes(bad_class.rpartition(".")[0]), f"classes in {bad_class.rpartition('.')[0]}"
            if choices:
                hint = _suggest(bad_class.rpartition(".")[2], choices, what, key=lambda c: c.rpartition(".")[2])
                hints.append(f"{bad_class!r} is not a valid class_path here. {hint}")
        option = re.search(r"Option '([\w.]+)' is not accepted", nxt)
        if given and option:
            cls = _import(given.group(1))
            if cls is not None:
                params = [n for n in inspect.signature(cls).parameters if n not in ("self", "args", "kwargs")]
                hints.append(f"{option.group(1)!r} is not an argument of {given.group(1)}. {_suggest(option.group(1), params, 'arguments')}")
    unknown = re.search(r"does not accept option '([\w.]+)'", message)
    if unknown and parser is not None:
        key = unknown.group(1)
        prefix = key.rpartition(".")[0]
        dests = [a.dest for a in getattr(parser, "_actions", []) if isinstance(getattr(a, "dest", None), str)]
        siblings = sorted({d for d in dests if d.rpartition(".")[0] == prefix and d != "help"})
        if siblings:
            hints.append(f"{key!r} is not an option. {_suggest(key, siblings, f'keys of {prefix!r}' if prefix else 'keys')}")
    return "".join(f"\nHint: {h}" for h in dict.fromkeys(hints))


class MetricArgumentParser(LightningArgumentParser):
    """LightningCLI's parser; its errors end with :func:`config_hints` (valid choices, close matches)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if self.exit_on_error:  # the parser that reports (nested parsers raise to it): add the hints once
            parser = getattr(ex, "subcommand_parser", None) or self
            try:
                message += config_hints(message, parser)
            except Exception:  # noqa: BLE001 - a hint must never hide the original error
                pass
        super().error(message, ex)


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> dotted keys (``{"model.init_args.loss.init_args.margin": 0.2, …}``), the names a W&B
    sweep uses for its parameters. Lists stay values; values that are not plain data become strings."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        elif value is None or isinstance(value, str | int | float | bool | list):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class LoggedConfigCallback(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` writer, which also sends the full config to the run's logger
    (dotted keys, see :func:`flatten_config`), so a W&B run shows every setting, sweep parameters included."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(flatten_config(self.config.clone().as_dict()))


class MetricCLI(LightningCLI):
    """LightningCLI for ``lit_metric``: ``--model`` / ``--data`` take any subclass by ``class_path``.

    The trainer loads ``--ckpt_path`` through :class:`~lit_metric.checkpoint.CheckedCheckpointIO` (unless the
    config sets another checkpoint IO plugin).
    """

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = CheckedCheckpointIO()
        return trainer

    def before_predict(self) -> None:
        """``lit-metric predict`` writes the embeddings: without a prediction writer in the config, add an
        :class:`~lit_metric.callbacks.EmbeddingWriter` writing ``<trainer.default_root_dir>/embeddings.pt``."""
        from pathlib import Path

        from lightning.pytorch.callbacks import BasePredictionWriter

        from lit_metric.callbacks.embedding_writer import EmbeddingWriter

        callbacks = self.trainer.callbacks  # type: ignore[attr-defined]
        if not any(isinstance(cb, BasePredictionWriter) for cb in callbacks):
            path = Path(self.trainer.default_root_dir) / "embeddings.pt"
            callbacks.append(EmbeddingWriter(str(path)))


def main(args: Sequence[str] | None = None) -> MetricCLI:
    """Entry point of ``lit-metric``; ``args`` defaults to ``sys.argv[1:]``."""
    return MetricCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        # None: LightningCLI reads sys.argv itself (passing sys.argv[1:] as `args` made it warn on every run)
        args=list(args) if args is not None else None,
        parser_class=MetricArgumentParser,
        auto_configure_optimizers=False,
        # every run also logs its config; `config.yaml` in a shared folder (no logger, or W&B's save_dir, as in
        # the trials of a sweep) is replaced by the latest run's instead of aborting the next run
        save_config_callback=LoggedConfigCallback,
        save_config_kwargs={"overwrite": True},
    )


def console_main() -> int:
    """The ``lit-metric`` console script: :func:`main`, then exit status 0 (``main`` returns the CLI object,
    which ``sys.exit`` would print and turn into status 1 — a failed trial for a W&B sweep agent)."""
    main()
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
