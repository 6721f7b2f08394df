"""Training throughput of resnet-fast on 32x32 inputs, end to end (in-memory loader, augmentation, Lightning).

Trains 2 epochs on the CIFAR-10 subset and reports the median training images/s of the epochs (validation
excluded) and effective GFLOP/s = forward FLOPs x 3 x images/s. This machine's fp32 peak is ~340 GFLOP/s.

    python benchmarks/throughput.py       # target: >= 150 effective GFLOP/s
"""

from _common import emit, parser, run_seeds

if __name__ == "__main__":
    args = parser(__doc__).parse_args()
    from imgclf.models import count_flops, create_model

    flops = count_flops(create_model("resnet-fast", 10, 3), (3, 32, 32))
    res = run_seeds("throughput", 1, dataset="cifar10", data_dir=str(args.data / "cifar-10-mini"),
                    epochs=args.epochs or 2, batch_size=512)
    rate = res["train_images_per_s"]["mean"]
    emit("throughput", {"model": "resnet-fast", "forward_gflops": round(flops / 1e9, 4), "images_per_s": rate,
                        "effective_gflops_per_s": round(3 * flops * rate / 1e9, 1)})
