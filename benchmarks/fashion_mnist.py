"""Fashion-MNIST (full 60k/10k) with the default recipe, 3 seeds; total wall time includes evaluation.

    python benchmarks/fashion_mnist.py    # target: >= 94.0 % test accuracy in <= 10 min
"""

from _common import emit, parser, run_seeds

if __name__ == "__main__":
    args = parser(__doc__).parse_args()
    extra = {"epochs": args.epochs} if args.epochs else {}
    extra["threads"] = args.threads
    emit("fashion-mnist", {"default": run_seeds("fashion", args.seeds, dataset="fashion-mnist",
                                                data_dir=str(args.data / "fashion-mnist"), **extra)})
