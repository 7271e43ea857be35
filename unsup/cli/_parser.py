"""The ``unsup`` argument parser, and :func:`resolve`: the settings a command runs with.

Design constraints:

- Building the parser imports no estimator, scipy or scikit-learn: ``unsup
  --help`` starts in a fraction of a second (``tests/test_startup.py``). The
  choices come from :mod:`unsup.cli._names` and :mod:`unsup._names`; the
  commands are named here and imported by :func:`unsup.cli.main` only when run.
- argparse's errors are one line (exit status 2); ``--help`` shows the usage.
- The parsed ``argparse.Namespace`` is never changed: :func:`resolve` derives
  the settings from it (each option that serves one algorithm or setting
  checked and given its default, the data files) into a new, read-only
  :class:`Settings`.
- An option given for an algorithm or setting it does not serve
  (``--linkage`` with k-means, ``--observer`` at 1 bit, ...) is an
  :class:`~unsup.cli.InputError`: an option is never silently ignored.
"""

from __future__ import annotations

import argparse
import glob
import types

from unsup._names import EUCLIDEAN_LINKAGES, LINKAGES
from unsup.cli._names import METRIC_NAMES, OBSERVER_NAMES
from unsup.cli._report import PROG, InputError

__all__ = ["Settings", "build_parser", "resolve"]

EXIT_USAGE = 2
ALGORITHMS = ("kmeans", "agglomerative", "divisive", "gmm")
DEMO_OUTPUT = "unsup-demo-output"
PICKLE_WARNING = (
    "Security: a model file is a pickle; loading one from an untrusted source can run "
    "arbitrary code. Only load model files you made or trust."
)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (usage goes to ``--help``)."""

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(convert, accept, expected):
    """An argparse ``type``: ``convert(text)``, refused with ``expected`` unless ``accept(value)``."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):  # a comparison with nan is False: refused too
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_seed = _number(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32 - 1]")
_contamination = _number(float, lambda v: 0.0 < v <= 0.5, "a number in (0, 0.5]")
_minkowski_p = _number(float, lambda v: v > 0, "a number > 0")


def _add_output(parser, what):
    parser.add_argument("-o", "--output", metavar="OUT", help=f"write {what} to OUT (.csv, .npy, .npz, or - for stdout)")


def _version():
    from unsup import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``unsup`` argument parser (one subparser per command)."""
    common = _Parser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", help="no progress or warnings on stderr (results are still printed)"
    )
    common.add_argument(
        "--random-state",
        type=_seed,
        default=0,
        metavar="N",
        help="seed of every random choice (default 0: the same command gives the same result)",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error about the input too (errors inside unsup always show theirs)",
    )

    parser = _Parser(
        prog=PROG,
        description="Unsupervised learning from the command line: cluster, detect anomalies, compress.",
        epilog="Run 'unsup COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="the main job on scikit-learn's digits: autoencoder, int8 codes, clustering, anomalies",
        description=(
            "Train an autoencoder on scikit-learn's bundled digits, compress its latent codes, cluster "
            "them five ways, flag anomalies, print a report and save plots (when matplotlib is installed)."
        ),
    )
    demo.add_argument(
        "-o", "--output", default=DEMO_OUTPUT, metavar="OUTDIR", help=f"folder for the plots (default ./{DEMO_OUTPUT})"
    )

    data_help = (
        "a numeric .csv (header optional) or a 2-d .npy file; several .npy files or a glob "
        "('parts/*.npy') are read as one dask array, a block per file"
    )
    scaling = _Parser(add_help=False)
    scaling.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.1:8786); several files without it "
        "start a local cluster of 2 workers",
    )

    def data_command(name, **texts):
        """A command over DATA... (one file in memory; several, a glob or --scheduler on Dask)."""
        parser = sub.add_parser(name, parents=[common, scaling], **texts)
        parser.add_argument("data", metavar="DATA", nargs="+", help=data_help)
        return parser

    cluster = data_command(
        "cluster",
        help="cluster the rows of DATA",
        description="Cluster the rows of DATA and write one label per row.",
        epilog=(
            "An option that does not apply to the chosen algorithm (--linkage without agglomerative, "
            "--method without divisive, --covariance-type without gmm, --p without --metric minkowski) "
            "is an error (exit status 2), never silently ignored. "
            "OUT: .csv has a 'label' column; .npy holds the labels (int64); .npz holds 'labels', "
            "'cluster_centers' (kmeans, divisive; the means for gmm; in standardised units with --scale, "
            "with 'scale_mean' and 'scale_std' to map them back) and 'probabilities' (gmm). "
            "Without -o only the summary is printed."
        ),
    )
    cluster.add_argument(
        "-a", "--algorithm", choices=ALGORITHMS, default="kmeans", help="the clustering model (default kmeans)"
    )
    cluster.add_argument(
        "-k", "--n-clusters", type=_positive_int, required=True, metavar="K", help="number of clusters"
    )
    cluster.add_argument(
        "--metric",
        choices=METRIC_NAMES,
        default="euclidean",
        metavar="M",
        help=f"distance: {', '.join(METRIC_NAMES)} (default euclidean; gmm uses it in its k-means initialisation)",
    )
    cluster.add_argument(
        "--p",
        type=_minkowski_p,
        default=None,
        metavar="P",
        help="the exponent p of --metric minkowski, > 0 (default 2; 1 is manhattan, inf is chebyshev)",
    )
    cluster.add_argument(
        "--scale",
        action="store_true",
        help="standardise every feature (zero mean, unit variance; scikit-learn's StandardScaler) before "
        "clustering: use it when the features are in different units or on very different scales, which "
        "otherwise let the widest feature decide every distance",
    )
    cluster.add_argument(
        "--linkage",
        choices=LINKAGES,
        default=None,
        help="agglomerative only (default ward with the euclidean metric, average otherwise)",
    )
    cluster.add_argument(
        "--method", choices=("bisecting", "diana"), default=None, help="divisive only (default bisecting)"
    )
    cluster.add_argument(
        "--covariance-type",
        choices=("full", "tied", "diag", "spherical"),
        default=None,
        help="gmm only (default full)",
    )
    _add_output(cluster, "the labels")

    detect = data_command(
        "detect",
        help="flag anomalous rows of DATA with an autoencoder",
        description=(
            "Train an autoencoder on DATA and flag the rows it reconstructs worst: the 'contamination' "
            "fraction of the rows with the highest anomaly scores. Every model standardises the features "
            "itself (zero mean, unit variance, learnt on DATA), so features in different units need no "
            "scaling first."
        ),
        epilog=(
            "The score is minus score_samples: the members' mean standardised reconstruction error "
            "(ensemble), the reconstruction error (autoencoder) or the negative ELBO (vae), higher is "
            "more anomalous. OUT: .csv has 'score' and 'outlier' (1 flagged, 0 not) "
            "columns; .npy a (n, 2) float array of both; .npz 'score', 'outlier' and 'threshold'."
        ),
    )
    detect.add_argument(
        "--model",
        choices=("ensemble", "autoencoder", "vae"),
        default="ensemble",
        help="an AutoencoderEnsemble (its defaults), or an Autoencoder or a VariationalAutoencoder with "
        "hidden layers 64 and 32, standardised inputs and a trimmed loss (default ensemble, the "
        "recommended detector)",
    )
    detect.add_argument(
        "--contamination",
        type=_contamination,
        default=0.1,
        metavar="C",
        help="expected fraction of anomalies, in (0, 0.5] (default 0.1)",
    )
    detect.add_argument(
        "--n-components",
        type=_positive_int,
        default=None,
        metavar="K",
        help="width of the code (default: 1 per member for the ensemble; half the features, at most 8, otherwise)",
    )
    detect.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="training epochs (at most, with early stopping) (default 20 for the ensemble, 200 otherwise)",
    )
    _add_output(detect, "scores and flags")

    compress = data_command(
        "compress",
        help="compress the rows of DATA to 8-, 4- or 1-bit codes",
        description=(
            "Quantize the rows of DATA (vectors, embeddings) to integer codes and report the error. "
            "With --granularity per_channel (the default) every feature gets its own range, so features "
            "on different scales need no scaling first (the codes then decode to the original units)."
        ),
        epilog=(
            "OUT: .csv has one integer code per feature (the input's header, if any); .npy holds the codes "
            "as stored (4-bit codes two a byte, 1-bit codes eight a byte); .npz holds those 'codes' with "
            "'n_bits', 'scheme', 'n_features' and what decodes them: 'scale' and 'zero_point' "
            "(x = scale * (code - zero_point)), or at 1 bit 'threshold' and 'levels'."
        ),
    )
    compress.add_argument("--n-bits", type=int, choices=(8, 4, 1), default=8, help="bits per value (default 8)")
    compress.add_argument(
        "--scheme",
        choices=("asymmetric", "symmetric"),
        default="asymmetric",
        help="asymmetric (affine, a zero point) or symmetric (zero point 0) (default asymmetric)",
    )
    compress.add_argument(
        "--granularity",
        choices=("per_channel", "per_tensor"),
        default="per_channel",
        help="one range per feature or one for all (default per_channel)",
    )
    compress.add_argument(
        "--observer",
        choices=OBSERVER_NAMES,
        default=None,
        help="how the 8- and 4-bit ranges are chosen (default minmax; an error with --n-bits 1, whose "
        "codes are sign bits around a threshold)",
    )
    _add_output(compress, "the codes")
    add_model_commands(sub, common, data_help, (cluster, detect, compress))
    return parser


def add_model_commands(sub, common, data_help, saving_parsers) -> None:
    """Add ``--save-model`` to ``saving_parsers`` and the ``apply`` and ``export`` commands."""
    for parser in saving_parsers:
        parser.add_argument(
            "--save-model",
            metavar="MODEL",
            help="also save the fitted model to MODEL (a joblib file, for 'unsup apply' and 'unsup export')",
        )

    def reader(name, **texts):
        parser = sub.add_parser(name, parents=[common], **texts)
        parser.add_argument("model", metavar="MODEL", help="a model file saved by --save-model")
        return parser

    apply = reader(
        "apply",
        help="score new data with a model saved by --save-model",
        description=(
            "Apply a model saved by 'unsup cluster|detect|compress --save-model MODEL' to the rows "
            "of DATA: cluster labels (and probabilities for gmm), anomaly scores and flags, or codes."
        ),
        epilog=PICKLE_WARNING + " OUT: as the command that saved the model writes it.",
    )
    apply.add_argument("data", metavar="DATA", help=data_help)
    _add_output(apply, "the results")
    export = reader(
        "export",
        help="write the ONNX graph of a model saved by --save-model",
        description=(
            "Write MODEL as an ONNX graph that onnxruntime (or any ONNX runtime) runs without Python. "
            'Needs the extra: pip install "unsup[onnx]".'
        ),
        epilog=PICKLE_WARNING + " See docs/deployment.md for each graph's outputs and tolerances.",
    )
    export.add_argument("-o", "--output", metavar="FILE.onnx", required=True, help="the ONNX file to write")
    export.add_argument("--float64", action="store_true", help="a graph with a float64 input (default float32)")


# ---------------------------------------------------------------- settings


class Settings(types.SimpleNamespace):
    """The settings of one command: its options, defaults resolved (read-only; :meth:`replace` copies).

    ``data`` is the one ``DATA`` path of an in-memory command, or the list of
    paths and patterns as given when ``dask`` is true (several files, a glob
    pattern or ``--scheduler``).
    """

    def __setattr__(self, name, value):
        raise AttributeError(f"settings are read-only: use replace({name}=...)")

    def __delattr__(self, name):
        raise AttributeError("settings are read-only")

    def replace(self, **changes) -> Settings:
        """A copy with ``changes``."""
        return Settings(**{**vars(self), **changes})


#: Options that serve one algorithm (cluster) or some settings (compress): (option, attribute, applies, where, default).
_SPECIFIC_OPTIONS = {
    "cluster": (
        ("--linkage", "linkage", lambda a: a.algorithm == "agglomerative", "--algorithm agglomerative", None),
        ("--method", "method", lambda a: a.algorithm == "divisive", "--algorithm divisive", "bisecting"),
        ("--covariance-type", "covariance_type", lambda a: a.algorithm == "gmm", "--algorithm gmm", "full"),
        ("--p", "p", lambda a: a.metric == "minkowski", "--metric minkowski", None),
    ),
    "compress": (("--observer", "observer", lambda a: a.n_bits != 1, "--n-bits 8 or 4", "minmax"),),
}


def _specific_options(args) -> dict:
    """Refuse an option given for an algorithm or setting it does not apply to; the defaults of the others.

    An option applies or it is an error (``InputError``: one line, exit 2),
    the same for every such option: a silently ignored option hides a
    mistake. "Given" means given on the command line: these options default
    to None in the parser.
    """
    values = {}
    for option, attr, applies, where, default in _SPECIFIC_OPTIONS.get(args.command, ()):
        value = getattr(args, attr)
        if value is not None and not applies(args):
            if attr == "p":
                got = f"--metric {args.metric}"
            else:
                got = f"--algorithm {args.algorithm}" if args.command == "cluster" else f"--n-bits {args.n_bits}"
            raise InputError(f"{option} applies to {where} only, got {got} (leave {option} out)")
        values[attr] = default if value is None else value
    if args.command == "cluster" and values["linkage"] is None:
        values["linkage"] = "ward" if args.metric in ("euclidean", "l2") else "average"
    if (args.command == "cluster" and args.algorithm == "agglomerative"
            and values["linkage"] in EUCLIDEAN_LINKAGES and args.metric not in ("euclidean", "l2")):
        raise InputError(
            f"--linkage {values['linkage']} needs the euclidean metric, got --metric {args.metric} "
            f"(use --linkage average, complete or single)"
        )
    return values


def _wants_dask(data, scheduler) -> bool:
    """More than one file, a glob pattern, or ``--scheduler``: the Dask path."""
    return len(data) > 1 or any(glob.has_magic(p) for p in data) or scheduler is not None


def resolve(args: argparse.Namespace) -> Settings:
    """The :class:`Settings` of the parsed ``args`` (``args`` itself is left as it is).

    Raises
    ------
    InputError
        An option given for an algorithm or setting it does not serve.
    """
    values = {**vars(args), **_specific_options(args)}
    data = values.get("data")
    if isinstance(data, list):  # the commands that read DATA... (cluster, detect, compress)
        values["dask"] = _wants_dask(data, values.get("scheduler"))
        if not values["dask"]:
            values["data"] = data[0]
    else:
        values["dask"] = False
    return Settings(**values)
