"""MNIST (full 60k/10k): the default recipe and LeNet-5, 3 seeds each; total wall time includes evaluation.

    python benchmarks/mnist.py            # targets: default >= 99.5 % in <= 5 min; lenet5 >= 99.0 %
"""

from _common import emit, parser, run_seeds

if __name__ == "__main__":
    args = parser(__doc__).parse_args()
    data = str(args.data / "mnist")
    extra = {"epochs": args.epochs} if args.epochs else {}
    extra["threads"] = args.threads
    emit("mnist", {"default": run_seeds("mnist", args.seeds, dataset="mnist", data_dir=data, **extra),
                   "lenet5": run_seeds("mnist-lenet5", args.seeds, dataset="mnist", data_dir=data, model="lenet5",
                                       **extra)})
