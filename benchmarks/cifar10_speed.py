"""Full CIFAR-10 with the default recipe (resnet-fast, ~10 epochs): test accuracy and wall time, N seeds.

Meant for a GPU (bf16, channels_last, data and augmentation on the GPU); on a CPU it takes about half an hour a run.
Reference: airbench94 reaches 94.01 % in 3.83 s on an A100 (about 3.3 s for the fastest single-file variant).
The full dataset is read from --data-dir (or downloaded, with checksums, when online).

    python benchmarks/cifar10_speed.py --data-dir ~/data/cifar10 [--seeds 5] [--compile]
"""

import time

from _common import emit, mean_std, parser

if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py (default: look-up order)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = p.parse_args()
    import imgclf

    accs, walls, train_s = [], [], []
    for seed in range(args.seeds):
        start = time.perf_counter()
        result = imgclf.train(dataset="cifar10", data_dir=args.data_dir, seed=seed, val_fraction=0.0,
                              runs_dir="runs/speed", name=f"speed-{seed}", overwrite=True, progress=False,
                              compile=args.compile, **({"epochs": args.epochs} if args.epochs else {}))
        walls.append(time.perf_counter() - start)
        accs.append(result.metrics["accuracy"])
        train_s.append(result.metrics["train_seconds"])
    emit("cifar10-speed", {"accuracy": mean_std(accs), "train_seconds": mean_std(train_s),
                           "wall_seconds_with_data_and_eval": mean_std(walls),
                           "reached_94": sum(a >= 0.94 for a in accs), "runs": len(accs)})
