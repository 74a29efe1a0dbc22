"""Daraja's phone form is the one the whole service uses; it lives in `tiketi.core.phone`."""

from tiketi.core.phone import (
    ACCEPTED_FORMS,
    is_normalized_msisdn,
    mask_msisdn,
    normalize_msisdn,
)

__all__ = ["ACCEPTED_FORMS", "is_normalized_msisdn", "mask_msisdn", "normalize_msisdn"]
