"""Nonlinear least squares: Levenberg-Marquardt on graph, compiled or block Jacobians."""

from scalar_autograd.lsq.batch import BatchFitResult, batch_least_squares
from scalar_autograd.lsq.blocks import ResidualBlock
from scalar_autograd.lsq.curve_fit import batch_curve_fit, curve_fit
from scalar_autograd.lsq.levenberg_marquardt import IterationInfo, levenberg_marquardt
from scalar_autograd.lsq.problem import LeastSquaresProblem
from scalar_autograd.lsq.result import CovarianceWarning, LeastSquaresResult
from scalar_autograd.lsq.solve import nonlinear_least_squares
from scalar_autograd.lsq.status import Status

LeastSquaresStatus = Status

__all__ = [
    "BatchFitResult", "batch_curve_fit", "batch_least_squares", "curve_fit",
    "CovarianceWarning", "IterationInfo", "LeastSquaresProblem", "LeastSquaresResult",
    "LeastSquaresStatus", "ResidualBlock", "Status", "levenberg_marquardt",
    "nonlinear_least_squares",
]
