"""``cnnlab classic`` (features → encoding → classifier) and ``cnnlab compare`` (one table)."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
features (local descriptors; RGB is converted to grey first):
  hog     Histograms of Oriented Gradients — Dalal & Triggs, CVPR 2005 (scikit-image). With
          --encoding none the whole HOG vector is the feature; otherwise each 2×2-cell block
          is one local descriptor.
  dsift   dense SIFT — Lowe's descriptor (IJCV 2004) on a regular grid (step 4 px) at patch
          sizes 8, 12 and 16 px, upright (OpenCV's SIFT compute on grid keypoints).
  sift    SIFT at detected difference-of-Gaussian keypoints (Lowe 2004), at most 100 per image;
          small images are upscaled to 64 px first; an image without keypoints encodes to 0.

encodings (a set of descriptors → one vector; codebook fitted on a seeded sample of training
descriptors, default sizes bovw 256, vlad 32, fisher 32):
  none    no codebook (hog, dsift): the descriptors concatenated.
  bovw    bag of visual words — Csurka et al. 2004: k-means, histogram of nearest centres
          (L1-normalized; the classifier sees its square root, the Hellinger map).
  vlad    Jégou et al., CVPR 2010: per centre the sum of residuals x − c, power + L2 normalized.
  fisher  improved Fisher vector — Perronnin, Sánchez & Mensink, ECCV 2010: gradients of a
          diagonal GMM w.r.t. means and variances, power + L2; descriptors PCA'd to 64 dims.
  --pyramid adds the spatial pyramid of Lazebnik et al., CVPR 2006: the encoding of the whole
          image and of each quadrant (1×1 + 2×2), concatenated.

classifiers (scikit-learn): linear-svm (LinearSVC, C by stratified 3-fold CV on the training
split only), rbf-svm (SVC, C=10), knn (5 neighbours), tree (a decision tree).

needs the optional extra: pip install "cnnlab[classic]"   (scikit-image, OpenCV)

examples:
  cnnlab classic --data digits
  cnnlab classic --data mnist --data-dir ../shared/data --features hog --json
  cnnlab classic --data ../shared/data/cifar10-jpeg --features dsift --encoding fisher \\
      --max-train 10000 --max-test 2000 --out runs/classic-fisher.json
  cnnlab compare runs/<cnn-run> runs/classic-fisher.json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classic", help="HOG / SIFT → BoVW / VLAD / Fisher → SVM (pre-CNN)",
                       description="The classical image-classification pipeline on the same "
                       "train/test splits as a CNN: local features, a codebook encoding, an "
                       "optional spatial pyramid and a scikit-learn classifier.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a name (digits, mnist, cifar10, ...), a folder "
                   "or .zip of class folders")
    p.add_argument("--data-dir", help="where named data sets live")
    p.add_argument("--features", default="hog", help="hog | dsift | sift (default hog)")
    p.add_argument("--encoding", help="none | bovw | vlad | fisher (default: none for hog, "
                   "bovw for sift)")
    p.add_argument("--classifier", default="linear-svm",
                   help="linear-svm | rbf-svm | knn | tree (default linear-svm)")
    p.add_argument("--pyramid", action="store_true", help="spatial pyramid 1×1 + 2×2")
    p.add_argument("--codebook-size", type=int, help="centres (k-means) or components (GMM)")
    p.add_argument("--pca", type=int, help="PCA dims of descriptors before the codebook "
                   "(default 64 for fisher, none otherwise)")
    p.add_argument("--max-train", type=int, help="a seeded stratified subset of the training "
                   "split (dense SIFT on 50k images is slow)")
    p.add_argument("--max-test", type=int, help="a seeded stratified subset of the test split")
    p.add_argument("--image-size", type=int, help="resize every image to N×N first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE.json", help="write the result JSON here (for "
                   "cnnlab compare)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run)

    c = sub.add_parser("compare", help="CNN, transfer and classical results in one table",
                       description="One table of accuracy and time from cnnlab run directories "
                       "and result JSON files (cnnlab classic --out, cnnlab transfer --json "
                       "saved to a file, benchmarks/results/*.json).",
                       epilog="example:\n  cnnlab compare runs/<run> classic-hog.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("sources", nargs="+", metavar="RUN_OR_RESULT")
    c.add_argument("--json", action="store_true", help="one JSON object on stdout")
    c.set_defaults(func=run_compare)


def run(args: argparse.Namespace) -> int:
    from ..classic import run_classic
    from . import emit_json, print_table

    result = run_classic(args.data, features=args.features, encoding=args.encoding,
                         classifier=args.classifier, pyramid=args.pyramid,
                         codebook_size=args.codebook_size, pca=args.pca,
                         max_train=args.max_train, max_test=args.max_test, seed=args.seed,
                         data_dir=args.data_dir, image_size=args.image_size, out=args.out,
                         progress=not args.json,
                         log=lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.json:
        emit_json(result)
        return 0
    t, s = result["timings"], result["sizes"]
    print_table([[result["name"], result["data"], result["accuracy"], s["n_train"], s["n_test"],
                  s["encoding_dim"], t["features"], t["codebook"], t["encode"], t["fit"],
                  t["total"]]],
                ["pipeline", "data", "accuracy", "train", "test", "dims", "features s",
                 "codebook s", "encode s", "fit s", "total s"])
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ..classic.compare import compare
    from . import emit_json, print_table

    result = compare(args.sources)
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        emit_json(result)
        return 0
    print_table([[r["name"], r["kind"], r["data"],
                  "—" if r["accuracy"] is None else float(r["accuracy"]),
                  "—" if r["seconds"] is None else float(r["seconds"]), r["notes"]]
                 for r in result["rows"]],
                ["name", "kind", "data", "accuracy", "seconds", "notes"])
    return 0
