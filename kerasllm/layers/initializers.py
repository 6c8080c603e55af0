"""`clone_initializer`: a fresh random stream for each weight."""

import keras


def clone_initializer(initializer):
    """A copy of `initializer` that draws its own values.

    A Keras 3 initializer made without a seed picks one seed when it is
    created and returns the same values at every call, so one instance
    shared by several weights gives them equal (or, for other shapes,
    overlapping) values. Each weight gets a clone instead, as in KerasHub:
    the clone is rebuilt from the config, so an unseeded initializer picks a
    new seed (from Python's `random`, which `keras.utils.set_random_seed`
    seeds, so seeded runs stay reproducible). An initializer given with an
    explicit seed keeps that seed.

    Args:
        initializer: a `keras.initializers.Initializer`, or anything
            `keras.initializers.get` accepts (a name or a config, which
            already gives a new instance each time).

    Returns:
        A new initializer of the same class and config.
    """
    if not isinstance(initializer, keras.initializers.Initializer):
        return keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())


def gpt2_normal(stddev=0.02):
    """GPT-2's weight initializer, `N(0, stddev)`. Defaults to `0.02`."""
    return keras.initializers.RandomNormal(stddev=stddev)
