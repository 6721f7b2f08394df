"""CIFAR-10 subset (5085 train / 1017 test, ../shared/data/cifar-10-mini) from scratch, default recipe, 3 seeds:
10-class and vehicles-vs-animals. Total wall time includes data loading and evaluation.

    python benchmarks/cifar_mini.py       # targets: >= 75 % (10-class), >= 92 % (vehicles-vs-animals), <= 10 min
"""

from _common import emit, parser, run_seeds

if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--only", choices=["ten", "grouped"], default=None)
    args = p.parse_args()
    data = str(args.data / "cifar-10-mini")
    extra = {"epochs": args.epochs} if args.epochs else {}
    extra["threads"] = args.threads
    results = {}
    if args.only in (None, "ten"):
        results["ten_class"] = run_seeds("c10mini", args.seeds, dataset="cifar10", data_dir=data, **extra)
    if args.only in (None, "grouped"):
        results["vehicles_vs_animals"] = run_seeds("c10mini-va", args.seeds, dataset="cifar10", data_dir=data,
                                                   classes="vehicles-vs-animals", **extra)
    emit("cifar-mini", results)
