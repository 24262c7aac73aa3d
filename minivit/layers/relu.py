"""ReLU, max(0, x): the non-linearity of the convolutional stem and of the ResNet."""

from minivit.backend import array_module


def relu_forward(x, inplace=False):
    """x (any shape) -> (out, cache); the cache is the output, positive exactly where x is.
    inplace=True writes the output over x (only for an array the caller owns)."""
    out = array_module(x).maximum(x, 0, out=x if inplace else None)
    return out, out


def relu_backward(dout, out):
    """The gradient passes where the input was positive and is zero elsewhere."""
    return dout * (out > 0)
