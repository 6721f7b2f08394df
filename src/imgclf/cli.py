"""The ``imgclf`` command line: a thin layer over the Python API.

    imgclf datasets
    imgclf models
    imgclf train --dataset cifar10 --model resnet-fast --epochs 10 --seeds 3 --name c10
    imgclf evaluate runs/c10
    imgclf predict runs/c10 some/image.jpg --top-k 3
    imgclf export runs/c10 --format onnx --quantize int8 --check
    imgclf serve runs/c10 --port 8000
    imgclf runs

Every ``train`` option is a config key (see ``imgclf.config``); ``--config run.yaml`` and ``key=value`` items
apply on top of the defaults in that order, then the options. Input errors print one line and exit with code 2.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from imgclf.cli_data import data_app
from imgclf.config import fields_info

app = typer.Typer(help="From a pile of images to a trained, understood and deployed image classifier.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})

app.add_typer(data_app, name="data")

_STATE = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    _STATE["debug"] = debug


def _console():
    from rich.console import Console

    return Console()


def _table(rows: list[dict], columns: list[tuple[str, str]], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for _, header in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*[_fmt(row.get(key)) for key, _ in columns])
    _console().print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# datasets / models ----------------------------------------------------------------------------------------------

@app.command()
def datasets(data_dir: Annotated[str | None, typer.Option(help="also look in this folder")] = None) -> None:
    """List the datasets imgclf knows, where it looks for them, and whether a local copy is present."""
    from imgclf.data import list_datasets

    rows = list_datasets(data_dir)
    for r in rows:
        r["status"] = {True: "present", False: "absent (downloaded on first use)", None: "-"}[r["present"]]
    _table(rows, [("name", "dataset"), ("status", "status"), ("path", "found at"), ("description", "description")])
    searched = rows[0]["searched"]
    print("looked for in: " + ", ".join(searched))


@app.command()
def models(json_out: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
           pretrained: Annotated[bool, typer.Option("--pretrained", help="list pretrained timm backbones")] = False,
           ) -> None:
    """List the model registry: name, parameters and FLOPs at the default input size."""
    if pretrained:
        _pretrained_models(json_out)
        return
    from imgclf.models import model_table

    rows = model_table()
    if json_out:
        for r in rows:
            print(json.dumps(r))
        return
    for r in rows:
        r["params_m"], r["gflops_s"] = f"{r['params'] / 1e6:.2f} M", f"{r['gflops']:.3f}"
    _table(rows, [("name", "model"), ("params_m", "parameters"), ("input", "input"), ("gflops_s", "GFLOPs"),
                  ("description", "description")])
    print("also: any timm backbone as timm:NAME (e.g. timm:resnet50)")


def _pretrained_models(json_out: bool) -> None:
    import timm

    from imgclf.models.pretrained import FEATURED, pretrained_source
    from imgclf.models.timm_backbone import timm_data_config

    rows = []
    for name in FEATURED:
        tc = timm_data_config(name)
        rows.append({"name": f"timm:{name}", "input": f"{tc['input_size']} px", "source": pretrained_source(name)})
    if json_out:
        for r in rows:
            print(json.dumps(r))
        return
    _table(rows, [("name", "backbone"), ("input", "input"), ("source", "weights come from")])
    print(f"any of timm's {len(timm.list_pretrained())} pretrained models works as timm:NAME with --pretrained "
          "(online) or --weights FILE (offline)")


# train ----------------------------------------------------------------------------------------------------------

def _train_command():
    """Build ``train`` with one option per config key, so the CLI, YAML and Python never drift apart."""
    params = [
        inspect.Parameter("overrides", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[list[str] | None, typer.Argument(help="key=value overrides",
                                                                                   show_default=False)]),
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[Path | None, typer.Option(help="YAML config file")]),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[str | None, typer.Option(
                              help="continue a stopped run (folder or name) from its last checkpoint")]),
    ]
    for key, tp, _default, help_text, _choices in fields_info():
        flag = "--" + key.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if tp in (bool, Optional[bool], bool | None) else [flag]
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[_cli_type(tp), typer.Option(*decls, help=help_text,
                                                                                         show_default=False)]))

    def train(**kwargs: Any) -> None:
        from imgclf.config import parse_overrides
        from imgclf.training.api import train as run_train

        overrides = parse_overrides(kwargs.pop("overrides") or [])
        config, resume = kwargs.pop("config"), kwargs.pop("resume")
        overrides.update({k: v for k, v in kwargs.items() if v is not None})
        result = run_train(config, resume=resume, **overrides)
        _print_metrics(result.metrics, result.run_dir)

    train.__signature__ = inspect.Signature(params)
    train.__doc__ = ("Train a classifier and evaluate it on the test split. Unset options come from the dataset's "
                     "recipe; the resolved config is saved in the run folder.")
    return train


def _cli_type(tp: Any) -> Any:
    base = tp.__args__[0] if hasattr(tp, "__args__") else tp
    return Optional[base]


app.command(name="train")(_train_command())


# evaluate / runs ----------------------------------------------------------------------------------------

def _print_metrics(metrics: dict, run_dir: Path) -> None:
    if not metrics:  # a DDP process other than rank 0: rank 0 reports
        return
    rows = []
    for key in ("accuracy", "top5_accuracy", "top2_accuracy", "macro_precision", "macro_recall", "macro_f1",
                "roc_auc", "train_seconds"):
        if key in metrics:
            std = metrics.get(f"{key}_std")
            value = _fmt(metrics[key]) + (f" ± {std:.4f}" if std is not None else "")
            rows.append({"metric": key, "value": value})
    _table(rows, [("metric", "metric"), ("value", "value")], title=f"test metrics: {run_dir}")
    if "per_class" in metrics:
        _table(metrics["per_class"], [("class", "class"), ("precision", "precision"), ("recall", "recall"),
                                      ("f1", "F1"), ("support", "support"), ("roc_auc", "ROC-AUC")])


@app.command()
def evaluate(run: Annotated[str, typer.Argument(help="run folder or name")],
             data_dir: Annotated[str | None, typer.Option(help="where the dataset files are")] = None,
             runs_dir: Annotated[str, typer.Option(help="folder of run folders")] = "runs") -> None:
    """Evaluate a run on its recorded test split; writes metrics.json, per_class.csv, confusion_matrix.png."""
    from imgclf.evaluation.evaluate import evaluate as run_evaluate
    from imgclf.runs import find_run

    path = find_run(run, runs_dir)
    _print_metrics(run_evaluate(path, data_dir=data_dir, progress=sys.stdout.isatty()), path)


@app.command()
def runs(runs_dir: Annotated[str, typer.Option(help="folder of run folders")] = "runs",
         json_out: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False) -> None:
    """List runs with their key metrics, newest first."""
    from imgclf.runs import list_runs

    rows = list_runs(runs_dir)
    if json_out:
        for r in rows:
            print(json.dumps(r))
        return
    if not rows:
        print(f"no runs in {runs_dir}/")
        return
    for r in rows:
        if r["accuracy"] is not None and r["accuracy_std"] is not None:
            r["accuracy"] = f"{r['accuracy']:.4f} ± {r['accuracy_std']:.4f}"
    _table(rows, [("name", "run"), ("dataset", "dataset"), ("model", "model"), ("seeds", "seeds"),
                  ("status", "status"), ("accuracy", "accuracy"), ("macro_f1", "macro F1"),
                  ("train_seconds", "train s"), ("created", "created")])


from imgclf import cli_report  # noqa: E402  (report, explain, compare live in their own module)
from imgclf.cli_deploy import export, predict, serve  # noqa: E402  (deployment commands, heavy imports inside)

for _command in (predict, export, serve, cli_report.report, cli_report.explain, cli_report.compare):
    app.command()(_command)
from imgclf.cli_dashboard import dashboard  # noqa: E402  (Streamlit is imported only by the child process)

app.command()(dashboard)


# entry point --------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run the CLI; input errors (ImgclfError, bad options) print one line and return 2."""
    from imgclf.errors import ImgclfError

    usage_error = _usage_error_class()

    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    command = typer.main.get_command(app)
    try:
        # without standalone mode, click returns (not raises) the code of typer.Exit, e.g. predict's 1
        code = command.main(args=argv, prog_name="imgclf", standalone_mode=False)
    except ImgclfError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `imgclf`: the help, as --help shows it
            print(exc.format_message())
            return 0
        hint = f" (see: imgclf {exc.ctx.info_name} --help)" if exc.ctx and exc.ctx.parent else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


def _usage_error_class() -> type[Exception]:
    """click's UsageError as typer raises it: typer >= 0.2x vendors its own click, older typer uses click's."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


if __name__ == "__main__":
    sys.exit(main())
