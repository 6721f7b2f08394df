"""Transfer learning with EfficientNet-Lite0 from the offline weights package (no network), 3 seeds:

* CIFAR-10 subset (../shared/data/cifar-10-mini): linear probe (10-class and vehicles-vs-animals) and fine-tune
  (the fine-tune recipe at 192 px, trained on all 5085 training images: no validation hold-out, nothing is selected
  on validation; measured on one seed: 90.7 % at 160 px with the 10 % hold-out, 91.4 % at 192 px without it,
  90.9 % at 224 px for 6 epochs in 18 min);
* the photo set (../shared/data/scenes-mini): buildings vs forest, linear probe (224 px) and fine-tune (160 px);
* frozen-feature extraction throughput at 224x224 from JPEG files, decoding included (cold cache).

    python benchmarks/transfer.py [--only probe|finetune|photos|extract] [--seeds 3]

Targets (2-core CPU): linear probe >= 86 % in <= 5 min, fine-tune >= 92 % in <= 20 min, vehicles-vs-animals
>= 98 %, photos >= 99 % in <= 3 min, feature extraction >= 100 images/s.
"""

import os
import tempfile
import time

from _common import emit, parser, run_seeds

LITE0 = "timm:tf_efficientnet_lite0"


def extraction(data) -> dict:
    """Decode the JPEG folder at 224 px (fresh cache) and extract frozen features: images/s end to end."""
    import numpy as np
    import torch

    from imgclf.data import load_dataset
    from imgclf.models import ImageClassifier, create_model
    from imgclf.training import features

    with tempfile.TemporaryDirectory() as cache:
        os.environ["IMGCLF_CACHE"] = cache
        start = time.perf_counter()
        ds = load_dataset(f"folder:{data / 'scenes-mini'}", image_size=224, crop_fraction=0.875, progress=False)
        decoded = time.perf_counter()
        net = create_model(LITE0, num_classes=2, pretrained=True)
        model = ImageClassifier(net, [0.5] * 3, [0.5] * 3, 224, 3)
        images = ds.pools["all"].images
        with torch.inference_mode():
            features.extract(model, np.asarray(images[:64]))  # warm-up
        t0 = time.perf_counter()
        feats = features.extract(model, np.asarray(images))
        end = time.perf_counter()
        del os.environ["IMGCLF_CACHE"]
    n = len(images)
    return {"images": n, "feature_dim": int(feats.shape[1]), "decode_images_per_s": round(n / (decoded - start), 1),
            "extract_images_per_s": round(n / (end - t0), 1),
            "end_to_end_images_per_s": round(n / (decoded - start + end - t0), 1)}


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--only", choices=["probe", "finetune", "photos", "extract"], default=None)
    p.add_argument("--finetune-size", type=int, default=192, help="px, input size for fine-tuning")
    args = p.parse_args()
    cifar = str(args.data / "cifar-10-mini")
    base = {"model": LITE0, "pretrained": True}
    extra = {"epochs": args.epochs} if args.epochs else {}
    out = {}
    if args.only in (None, "extract"):
        out["extraction"] = extraction(args.data)
    if args.only in (None, "probe"):
        out["cifar_linear_probe"] = run_seeds("lp", args.seeds, dataset="cifar10", data_dir=cifar,
                                              transfer="linear-probe", **base, **extra)
        out["cifar_vehicles_linear_probe"] = run_seeds("lp-va", args.seeds, dataset="cifar10", data_dir=cifar,
                                                       classes="vehicles-vs-animals", transfer="linear-probe",
                                                       **base, **extra)
    if args.only in (None, "photos"):
        photos = f"folder:{args.data / 'scenes-mini'}"
        out["photos_linear_probe"] = run_seeds("photos", args.seeds, dataset=photos, transfer="linear-probe",
                                               **base, **extra)
        out["photos_fine_tune"] = run_seeds("photos-ft", args.seeds, dataset=photos, transfer="fine-tune",
                                            image_size=160, **base, **extra)
    if args.only in (None, "finetune"):
        out["cifar_fine_tune"] = run_seeds("ft", args.seeds, dataset="cifar10", data_dir=cifar, transfer="fine-tune",
                                           image_size=args.finetune_size, val_fraction=0.0, **base, **extra)
    emit("transfer", out)
