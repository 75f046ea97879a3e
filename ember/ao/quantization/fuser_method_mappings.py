"""Which fused module a sequence of module types becomes, for eager-mode fusion.

In eval (``fuse_modules``) BatchNorm is folded into the preceding conv/linear weights; for QAT
(``fuse_modules_qat``) conv and BN stay separate inside a ``ConvBn`` container so BN keeps
training."""

from __future__ import annotations

from ember import nn
from ember.ao.nn import intrinsic as nni

__all__ = ["fuse_conv_bn", "fuse_conv_bn_relu", "fuse_linear_bn", "fuse_convtranspose_bn",
           "get_fuser_method"]


def _same_mode(*mods):
    if len({m.training for m in mods}) != 1:
        raise AssertionError("Conv and BN both must be in the same mode (train or eval).")


def _check_bn(conv_out, bn, what="Conv"):
    if bn.num_features != conv_out:
        raise AssertionError(f"Output channel of {what} must match num_features of BatchNorm "
                             f"({conv_out} vs {bn.num_features})")
    if not bn.affine:
        raise AssertionError("Only support fusing BatchNorm2d with affine set to True")
    if not bn.track_running_stats:
        raise AssertionError("Only support fusing BatchNorm2d with tracking_running_stats set "
                             "to True")


def _eval_only(*mods):
    if any(m.training for m in mods):
        raise AssertionError("Fusion only for eval! (call model.eval() before fuse_modules, or "
                             "use fuse_modules_qat for training)")


def fuse_conv_bn(is_qat, conv, bn):
    """Conv + BN: a ``ConvBn`` container for QAT, else one conv with BN folded in."""
    _same_mode(conv, bn)
    if is_qat:
        _check_bn(conv.out_channels, bn)
        fused = {nn.Conv1d: nni.ConvBn1d, nn.Conv2d: nni.ConvBn2d,
                 nn.Conv3d: nni.ConvBn3d}.get(type(conv))
        if fused is None:
            raise NotImplementedError(f"Cannot fuse train modules: {(conv, bn)}")
        return fused(conv, bn)
    _eval_only(conv, bn)
    return nn.utils.fusion.fuse_conv_bn_eval(conv, bn)


def fuse_conv_bn_relu(is_qat, conv, bn, relu):
    """Conv + BN + ReLU: ``ConvBnReLU`` for QAT, else ``ConvReLU`` of the folded conv."""
    _same_mode(conv, bn, relu)
    if is_qat:
        _check_bn(conv.out_channels, bn)
        fused = {nn.Conv1d: nni.ConvBnReLU1d, nn.Conv2d: nni.ConvBnReLU2d,
                 nn.Conv3d: nni.ConvBnReLU3d}.get(type(conv))
        if fused is None:
            raise NotImplementedError(f"Cannot fuse train modules: {(conv, bn, relu)}")
        return fused(conv, bn, relu)
    fused = {nn.Conv1d: nni.ConvReLU1d, nn.Conv2d: nni.ConvReLU2d,
             nn.Conv3d: nni.ConvReLU3d}.get(type(conv))
    if fused is None:
        raise NotImplementedError(f"Cannot fuse eval modules: {(conv, bn, relu)}")
    _eval_only(conv, bn)
    return fused(nn.utils.fusion.fuse_conv_bn_eval(conv, bn), relu)


def fuse_linear_bn(is_qat, linear, bn):
    """Linear + BatchNorm1d: ``LinearBn1d`` for QAT, else the folded Linear."""
    _same_mode(linear, bn)
    if is_qat:
        _check_bn(linear.out_features, bn, "Linear")
        return nni.LinearBn1d(linear, bn)
    _eval_only(linear, bn)
    return nn.utils.fusion.fuse_linear_bn_eval(linear, bn)


def fuse_convtranspose_bn(is_qat, convt, bn):
    """ConvTranspose + BN (eval only): the folded transposed conv."""
    _same_mode(convt, bn)
    if is_qat:
        raise Exception("Fusing ConvTranspose+BatchNorm not yet supported in QAT.")  # noqa: TRY002
    _eval_only(convt, bn)
    return nn.utils.fusion.fuse_conv_bn_eval(convt, bn, transpose=True)


def _sequential_wrapper2(sequential):
    def fuser_method(is_qat, m1, m2):
        return sequential(m1, m2)
    return fuser_method


_DEFAULT_OP_LIST_TO_FUSER_METHOD = {
    (nn.Conv1d, nn.BatchNorm1d): fuse_conv_bn,
    (nn.Conv1d, nn.BatchNorm1d, nn.ReLU): fuse_conv_bn_relu,
    (nn.Conv2d, nn.BatchNorm2d): fuse_conv_bn,
    (nn.Conv2d, nn.BatchNorm2d, nn.ReLU): fuse_conv_bn_relu,
    (nn.Conv3d, nn.BatchNorm3d): fuse_conv_bn,
    (nn.Conv3d, nn.BatchNorm3d, nn.ReLU): fuse_conv_bn_relu,
    (nn.Conv1d, nn.ReLU): _sequential_wrapper2(nni.ConvReLU1d),
    (nn.Conv2d, nn.ReLU): _sequential_wrapper2(nni.ConvReLU2d),
    (nn.Conv3d, nn.ReLU): _sequential_wrapper2(nni.ConvReLU3d),
    (nn.Linear, nn.BatchNorm1d): fuse_linear_bn,
    (nn.Linear, nn.ReLU): _sequential_wrapper2(nni.LinearReLU),
    (nn.BatchNorm2d, nn.ReLU): _sequential_wrapper2(nni.BNReLU2d),
    (nn.BatchNorm3d, nn.ReLU): _sequential_wrapper2(nni.BNReLU3d),
    (nn.ConvTranspose1d, nn.BatchNorm1d): fuse_convtranspose_bn,
    (nn.ConvTranspose2d, nn.BatchNorm2d): fuse_convtranspose_bn,
    (nn.ConvTranspose3d, nn.BatchNorm3d): fuse_convtranspose_bn,
}


def get_fuser_method(op_list, additional_fuser_method_mapping=None):
    """The fuser function for a tuple of module types (None if the sequence does not fuse)."""
    mapping = {**_DEFAULT_OP_LIST_TO_FUSER_METHOD, **(additional_fuser_method_mapping or {})}
    return mapping.get(tuple(op_list))
