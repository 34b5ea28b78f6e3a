"""Options shared by subcommands: the optimizer name and its variants."""
from __future__ import annotations

from modeq.symbolic import optimizers

OPTIMIZER_NAMES = sorted(optimizers.BUILTINS)


def add_optimizer_args(parser):
    parser.add_argument("optimizer", metavar="OPTIMIZER",
                        help=f"a built-in optimizer: {', '.join(OPTIMIZER_NAMES)}")
    parser.add_argument("--eps-outside", action="store_true",
                        help="Adam/RMSProp with eps outside the square root (torch.optim.Adam)")
    parser.add_argument("--no-bias-correction", action="store_true",
                        help="Adam/RMSProp without bias correction")


def optimizer_from_args(args):
    """The built-in optimizer an argparse namespace names; ValueError for an unknown name."""
    return optimizers.get(args.optimizer,
                          eps_placement="outside" if args.eps_outside else "inside",
                          bias_correction=not args.no_bias_correction)
