"""ReLU, max(0, x): the non-linearity between the convolutions of the convolutional stem."""


def relu_forward(x):
    """x (any shape) -> (out, cache); the cache is the mask of positive inputs."""
    positive = x > 0
    return x * positive, positive


def relu_backward(dout, positive):
    """The gradient passes where the input was positive and is zero elsewhere."""
    return dout * positive
