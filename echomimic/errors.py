"""User-facing errors: each message says what went wrong and what to do about it."""


class EchoMimicError(Exception):
    """Base class of every error meant to be shown to a user as is."""


class WeightsError(EchoMimicError):
    """A weight file is missing, unreadable, unsafe or does not fit the model."""


class InputError(EchoMimicError, ValueError):
    """An input (image, audio, landmarks, setting) cannot be used as given."""


class CancelledError(EchoMimicError):
    """The caller asked to stop; models are left usable."""


class UnknownVariantError(InputError, KeyError):
    """A variant name that no release has (also a ``KeyError``: the release tables are looked up by name)."""

    __str__ = Exception.__str__  # KeyError's own would quote the message
