from __future__ import annotations

from typing import Any

import pytest

from tiketi.payments.mpesa.phone import (
    ACCEPTED_FORMS,
    is_normalized_msisdn,
    mask_msisdn,
    normalize_msisdn,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0708374149", "254708374149"),
        ("0112345678", "254112345678"),
        ("+254708374149", "254708374149"),
        ("+254112345678", "254112345678"),
        ("254708374149", "254708374149"),
        ("254112345678", "254112345678"),
        ("708374149", "254708374149"),
        ("112345678", "254112345678"),
        ("0708 374 149", "254708374149"),
        ("0708-374-149", "254708374149"),
        ("+254 708 374 149", "254708374149"),
        ("+254-708-374-149", "254708374149"),
        ("  0708374149\n", "254708374149"),
        ("0799999999", "254799999999"),
    ],
)
def test_accepted_forms_normalize_to_daraja_form(raw: str, expected: str) -> None:
    assert normalize_msisdn(raw) == expected
    assert is_normalized_msisdn(normalize_msisdn(raw))


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "07083741",  # too short
        "07083741490",  # too long
        "0208374149",  # landline prefix
        "0808374149",  # not a mobile range
        "254208374149",
        "+255708374149",  # Tanzania
        "255708374149",
        "+2540708374149",  # trunk zero after the country code
        "00254708374149",
        "0708.374.149",  # dots are not tolerated
        "(0708) 374149",
        "07O8374149",  # letter O
        "٠٧٠٨٣٧٤١٤٩",  # Arabic-Indic digits
        "++254708374149",
        "254 7083741490",
        "8374149",
    ],
)
def test_other_forms_are_refused_with_the_accepted_forms_named(raw: str) -> None:
    with pytest.raises(ValueError, match="07XXXXXXXX") as info:
        normalize_msisdn(raw)
    assert ACCEPTED_FORMS in str(info.value)
    # The number itself stays out of the message (it reaches API answers and logs).
    if raw.strip():
        assert raw.strip() not in str(info.value)


@pytest.mark.parametrize("raw", [708374149, None, b"0708374149"])
def test_non_strings_are_a_type_error(raw: Any) -> None:
    with pytest.raises(TypeError):
        normalize_msisdn(raw)


def test_is_normalized_msisdn() -> None:
    assert is_normalized_msisdn("254708374149")
    assert is_normalized_msisdn("254112345678")
    assert not is_normalized_msisdn("0708374149")
    assert not is_normalized_msisdn("+254708374149")
    assert not is_normalized_msisdn("2547083741490")


def test_mask_msisdn() -> None:
    assert mask_msisdn("254708374149") == "2547*****149"
    assert mask_msisdn("1234567") == "*******"
    assert mask_msisdn("") == ""
