"""Every body recorded in ../shared/daraja.md, parsed verbatim, plus the variants Daraja sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tiketi.payments.mpesa.schemas import (
    CALLBACK_ACK,
    NAIROBI,
    ApigeeFault,
    DarajaErrorEnvelope,
    OAuthToken,
    StkCallbackEnvelope,
    StkPushResult,
    StkQueryResponse,
    StkQueryResult,
    StkStatus,
    classify_result_code,
    load_daraja_json,
    nairobi_timestamp,
    normalize_result_code,
    parse_nairobi_timestamp,
    parse_stk_callback,
)

# --- verbatim from daraja.md -------------------------------------------------------------

SUCCESS_CALLBACK = """{"Body": {"stkCallback": {
  "MerchantRequestID": "ac7b-470b-8df7-23ab3cef38271280493",
  "CheckoutRequestID": "ws_CO_061020260952331234708374149",
  "ResultCode": 0,
  "ResultDesc": "The service request is processed successfully.",
  "CallbackMetadata": {"Item": [
    {"Name": "Amount", "Value": 1500.00},
    {"Name": "MpesaReceiptNumber", "Value": "UJ22T8IYOU"},
    {"Name": "Balance"},
    {"Name": "TransactionDate", "Value": 20261006095233},
    {"Name": "PhoneNumber", "Value": 254708374149}]}}}}"""

FAILURE_CALLBACK = """{"Body": {"stkCallback": {"MerchantRequestID": "f1e2-4b95-a71d-b30d3cdbb7a7942864",
  "CheckoutRequestID": "ws_CO_21072024125243250722943992",
  "ResultCode": 1032, "ResultDesc": "Request cancelled by user"}}}"""  # noqa: E501 - verbatim

PUSH_SUCCESS = """{"MerchantRequestID": "ac7b-470b-8df7-23ab3cef38271071873",
 "CheckoutRequestID": "ws_CO_261120261430051234708374149",
 "ResponseCode": "0",
 "ResponseDescription": "Success. Request accepted for processing",
 "CustomerMessage": "Success. Request accepted for processing"}"""

QUERY_FINAL = """{"ResponseCode": "0", "ResponseDescription": "The service request has been accepted successsfully",
 "MerchantRequestID": "22205-34066-1", "CheckoutRequestID": "ws_CO_13012021093521236557",
 "ResultCode": "1032", "ResultDesc": "Request cancelled by user"}"""  # noqa: E501 - verbatim

QUERY_PENDING_ENVELOPE = """{"requestId": "...", "errorCode": "500.001.1001", "errorMessage": "The transaction is being processed"}"""  # noqa: E501

QUERY_PENDING_4999 = (
    """{"ResultCode": "4999", "ResultDesc": "The transaction is still under processing"}"""
)

OAUTH_STRING = """{"access_token": "c9SQxWWhmdVRlyh0zh8gZDTkubVF", "expires_in": "3599"}"""
OAUTH_NUMBER = """{"access_token": "c9SQxWWhmdVRlyh0zh8gZDTkubVF", "expires_in": 3599}"""

GRANT_TYPE_ERROR = """{"requestId": "...", "errorCode": "400.008.02",
"errorMessage": "Invalid grant type passed"}"""

ERROR_ENVELOPES = [
    (
        '{"requestId": "1a2b-3c4d", "errorCode": "400.002.02", '
        '"errorMessage": "Bad Request - Invalid PhoneNumber"}'
    ),
    '{"requestId": "x", "errorCode": "400.002.05", "errorMessage": "Invalid Request Payload"}',
    '{"requestId": "x", "errorCode": "404.001.03", "errorMessage": "Invalid Access Token"}',
    '{"requestId": "x", "errorCode": "401.002.01", "errorMessage": "Invalid Access Token"}',
    '{"requestId": "x", "errorCode": "500.001.1001", "errorMessage": "Merchant does not exist"}',
    '{"requestId": "x", "errorCode": "500.001.1001", "errorMessage": "Wrong credentials"}',
    (
        '{"requestId": "x", "errorCode": "500.001.1001", "errorMessage": "Unable to lock '
        'subscriber, a transaction is already in process for the current subscriber"}'
    ),
    '{"requestId": "x", "errorCode": "500.003.02", "errorMessage": "System is busy..."}',
    '{"requestId": "x", "errorCode": "500.003.03", "errorMessage": "Spike Arrest Violation"}',
    '{"requestId": "x", "errorCode": "500.003.03", "errorMessage": "Quota Violation"}',
    GRANT_TYPE_ERROR,
    QUERY_PENDING_ENVELOPE,
]


def _callback_with(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(SUCCESS_CALLBACK)
    body["Body"]["stkCallback"].update(changes)
    return body


def _with_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    return _callback_with(CallbackMetadata={"Item": items})


# --- callbacks ----------------------------------------------------------------------------


def test_success_callback_verbatim() -> None:
    callback = parse_stk_callback(SUCCESS_CALLBACK.encode())
    assert callback.merchant_request_id == "ac7b-470b-8df7-23ab3cef38271280493"
    assert callback.checkout_request_id == "ws_CO_061020260952331234708374149"
    assert callback.result_code == 0
    assert callback.result_code_text == "0"
    assert callback.result_desc == "The service request is processed successfully."
    assert callback.status is StkStatus.succeeded
    assert callback.amount == Decimal("1500.00")
    assert str(callback.amount) == "1500.00"  # exact, not a float round-trip
    assert callback.amount == 1500
    assert callback.receipt == "UJ22T8IYOU"
    assert callback.phone == "254708374149"
    assert callback.transaction_date == datetime(2026, 10, 6, 9, 52, 33, tzinfo=NAIROBI)
    assert callback.transaction_date is not None
    assert callback.transaction_date.utcoffset() == timedelta(hours=3)
    assert callback.transaction_date.astimezone(UTC).hour == 6
    assert callback.metadata is not None
    assert callback.metadata.get("Balance") is None  # the item without Value


def test_success_callback_as_text_and_as_decoded_json() -> None:
    from_text = parse_stk_callback(SUCCESS_CALLBACK)
    from_mapping = parse_stk_callback(json.loads(SUCCESS_CALLBACK))
    assert from_text.receipt == from_mapping.receipt == "UJ22T8IYOU"
    # json.loads turned 1500.00 into a float; the amount is still exact.
    assert from_mapping.amount == Decimal(1500)


def test_failure_callback_verbatim() -> None:
    callback = parse_stk_callback(FAILURE_CALLBACK.encode())
    assert callback.result_code == 1032
    assert callback.result_desc == "Request cancelled by user"
    assert callback.status is StkStatus.failed
    assert callback.metadata is None
    assert callback.amount is None
    assert callback.receipt is None
    assert callback.phone is None
    assert callback.transaction_date is None


def test_older_stk_cb_prefixed_result_desc_is_judged_by_code_only() -> None:
    failed = parse_stk_callback(
        _callback_with(ResultCode=1032, ResultDesc="[STK_CB - ]Request cancelled by user")
    )
    assert failed.status is StkStatus.failed
    assert failed.result_desc.startswith("[STK_CB - ]")
    succeeded = parse_stk_callback(
        _callback_with(ResultDesc="[STK_CB - ]The service request is processed successfully.")
    )
    assert succeeded.status is StkStatus.succeeded


def test_envelope_model_exposes_the_callback() -> None:
    envelope = StkCallbackEnvelope.model_validate_json(SUCCESS_CALLBACK)
    assert envelope.callback.checkout_request_id == "ws_CO_061020260952331234708374149"


@pytest.mark.parametrize(
    ("raw_amount", "expected"),
    [
        ("1500", Decimal(1500)),
        ("1500.00", Decimal("1500.00")),
        ("1.00", Decimal("1.00")),
        ('"1500"', Decimal(1500)),
        ("1500.5", Decimal("1500.5")),
    ],
)
def test_amount_forms(raw_amount: str, expected: Decimal) -> None:
    text = SUCCESS_CALLBACK.replace('"Value": 1500.00', f'"Value": {raw_amount}')
    assert parse_stk_callback(text).amount == expected


@pytest.mark.parametrize("value", ["abc", True, [1], {"a": 1}, "NaN", "Infinity"])
def test_a_garbled_amount_makes_the_callback_malformed(value: Any) -> None:
    body = _with_items([{"Name": "Amount", "Value": value}])
    with pytest.raises(ValidationError):
        parse_stk_callback(body)


def test_nan_literal_is_refused() -> None:
    text = SUCCESS_CALLBACK.replace('"Value": 1500.00', '"Value": NaN')
    with pytest.raises(ValueError, match="NaN"):
        parse_stk_callback(text)


def test_string_typed_metadata_and_result_code() -> None:
    body = _with_items(
        [
            {"Name": "Amount", "Value": "1500"},
            {"Name": "MpesaReceiptNumber", "Value": "UJ22T8IYOU"},
            {"Name": "TransactionDate", "Value": "20261006095233"},
            {"Name": "PhoneNumber", "Value": "254708374149"},
        ]
    )
    body["Body"]["stkCallback"]["ResultCode"] = "0"
    callback = parse_stk_callback(body)
    assert callback.result_code == 0
    assert callback.amount == 1500
    assert callback.phone == "254708374149"
    assert callback.transaction_date == datetime(2026, 10, 6, 9, 52, 33, tzinfo=NAIROBI)


def test_float_typed_numbers_from_a_plain_json_decoder() -> None:
    body = _with_items(
        [
            {"Name": "TransactionDate", "Value": 20261006095233.0},
            {"Name": "PhoneNumber", "Value": 254708374149.0},
        ]
    )
    body["Body"]["stkCallback"]["ResultCode"] = 1032.0
    callback = parse_stk_callback(body)
    assert callback.result_code == 1032
    assert callback.phone == "254708374149"
    assert callback.transaction_date is not None


def test_fractional_json_numbers_from_raw_bytes() -> None:
    text = FAILURE_CALLBACK.replace('"ResultCode": 1032', '"ResultCode": 1032.0')
    assert parse_stk_callback(text.encode()).result_code == 1032
    half = FAILURE_CALLBACK.replace('"ResultCode": 1032', '"ResultCode": 1032.5')
    with pytest.raises(ValidationError):
        parse_stk_callback(half.encode())


def test_masked_phone_is_passed_through() -> None:
    callback = parse_stk_callback(_with_items([{"Name": "PhoneNumber", "Value": "2547*****149"}]))
    assert callback.phone == "2547*****149"


@pytest.mark.parametrize("value", ["2026", "20261340095233", "yesterday", 1.5, True, [1]])
def test_a_garbled_transaction_date_is_dropped_not_fatal(value: Any) -> None:
    callback = parse_stk_callback(_with_items([{"Name": "TransactionDate", "Value": value}]))
    assert callback.transaction_date is None


def test_items_are_read_by_name_in_any_order_with_extra_keys_ignored() -> None:
    body = _with_items(
        [
            {"Name": "PhoneNumber", "Value": 254708374149, "Type": "Number"},
            {"Name": "SomethingNew", "Value": "x"},
            {"Name": "mpesareceiptnumber", "Value": " UJ22T8IYOU "},
            {"Name": "Amount", "Value": 10},
        ]
    )
    body["Body"]["stkCallback"]["NewTopLevelKey"] = {"nested": True}
    body["Body"]["Extra"] = 1
    body["Extra"] = 2
    callback = parse_stk_callback(body)
    assert callback.amount == 10
    assert callback.receipt == "UJ22T8IYOU"
    assert callback.phone == "254708374149"
    assert callback.transaction_date is None


def test_a_single_item_object_is_read_as_a_list() -> None:
    callback = parse_stk_callback(
        _callback_with(CallbackMetadata={"Item": {"Name": "Amount", "Value": 5}})
    )
    assert callback.amount == 5


@pytest.mark.parametrize("value", [None, True, "", "  "])
def test_empty_receipt_and_phone_values_are_none(value: Any) -> None:
    callback = parse_stk_callback(
        _with_items(
            [
                {"Name": "MpesaReceiptNumber", "Value": value},
                {"Name": "PhoneNumber", "Value": value},
            ]
        )
    )
    assert callback.receipt is None
    assert callback.phone is None


def test_non_numeric_result_code_is_kept_as_text() -> None:
    callback = parse_stk_callback(_callback_with(ResultCode="SFC_IC0003", CallbackMetadata=None))
    assert callback.result_code == "SFC_IC0003"
    assert callback.status is StkStatus.failed
    unknown = parse_stk_callback(_callback_with(ResultCode=" 77 "))
    assert unknown.result_code == 77
    assert unknown.status is StkStatus.unknown


@pytest.mark.parametrize("value", [True, None, "", 1.5, [0], {"a": 0}])
def test_bad_result_codes_are_malformed(value: Any) -> None:
    with pytest.raises(ValidationError):
        parse_stk_callback(_callback_with(ResultCode=value))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"not json",
        b"[]",
        b"{}",
        b'{"Body": {}}',
        b'{"Body": {"stkCallback": {"ResultCode": 0}}}',
        b'{"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "",'
        b' "ResultCode": 0}}}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_malformed_callback_bodies_raise_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: the route answers 400
        parse_stk_callback(raw)


def test_callback_ack_shape() -> None:
    assert CALLBACK_ACK == {"ResultCode": 0, "ResultDesc": "Accepted"}


# --- push, query, errors, OAuth -------------------------------------------------------------


def test_push_success_verbatim() -> None:
    result = StkPushResult.model_validate_json(PUSH_SUCCESS)
    assert result.merchant_request_id == "ac7b-470b-8df7-23ab3cef38271071873"
    assert result.checkout_request_id == "ws_CO_261120261430051234708374149"
    assert result.response_code == "0"
    assert result.response_description == "Success. Request accepted for processing"
    assert result.customer_message == "Success. Request accepted for processing"
    numeric = StkPushResult.model_validate({**json.loads(PUSH_SUCCESS), "ResponseCode": 0})
    assert numeric.response_code == "0"


def test_query_final_answer_verbatim() -> None:
    answer = StkQueryResponse.model_validate_json(QUERY_FINAL)
    assert answer.response_code == "0"
    assert answer.result_code == "1032"
    assert answer.result_desc == "Request cancelled by user"
    assert answer.merchant_request_id == "22205-34066-1"
    assert answer.checkout_request_id == "ws_CO_13012021093521236557"
    assert classify_result_code(answer.result_code) is StkStatus.failed


def test_query_pending_forms_verbatim() -> None:
    pending = StkQueryResponse.model_validate_json(QUERY_PENDING_4999)
    assert pending.result_code == "4999"
    assert pending.response_code is None
    assert pending.checkout_request_id is None
    assert classify_result_code(pending.result_code) is StkStatus.pending
    envelope = DarajaErrorEnvelope.model_validate_json(QUERY_PENDING_ENVELOPE)
    assert envelope.error_code == "500.001.1001"
    assert envelope.error_message == "The transaction is being processed"
    assert envelope.request_id == "..."


def test_query_result_code_as_number_becomes_text() -> None:
    answer = StkQueryResponse.model_validate({"ResultCode": 0, "ResultDesc": "ok"})
    assert answer.result_code == "0"


@pytest.mark.parametrize("raw", ERROR_ENVELOPES)
def test_error_envelopes_verbatim(raw: str) -> None:
    envelope = DarajaErrorEnvelope.model_validate(load_daraja_json(raw))
    assert envelope.error_code == json.loads(raw)["errorCode"]
    assert envelope.error_message == json.loads(raw)["errorMessage"]


def test_envelope_without_request_id_or_message() -> None:
    envelope = DarajaErrorEnvelope.model_validate({"errorCode": "500.003.02"})
    assert envelope.request_id is None
    assert envelope.error_message == ""
    with pytest.raises(ValidationError):
        DarajaErrorEnvelope.model_validate({"errorMessage": "no code"})


@pytest.mark.parametrize("raw", [OAUTH_STRING, OAUTH_NUMBER])
def test_oauth_success_with_expires_in_string_or_number(raw: str) -> None:
    token = OAuthToken.model_validate(load_daraja_json(raw))
    assert token.access_token == "c9SQxWWhmdVRlyh0zh8gZDTkubVF"
    assert len(token.access_token) == 28
    assert token.expires_in == 3599


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": "", "expires_in": "3599"},
        {"access_token": 12345, "expires_in": "3599"},
        {"access_token": "abc", "expires_in": "soon"},
        {"access_token": "abc", "expires_in": -1},
        {"expires_in": "3599"},
        {"access_token": "abc"},
    ],
)
def test_unusable_oauth_answers(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OAuthToken.model_validate(body)


def test_oauth_empty_body_is_not_json() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json's own error
        load_daraja_json(b"")


def test_apigee_fault() -> None:
    fault = ApigeeFault.model_validate_json(
        '{"fault": {"faultstring": "Spike arrest violation. Allowed rate : 10ps",'
        ' "detail": {"errorcode": "policies.ratelimit.SpikeArrestViolation"}}}'
    )
    assert fault.error_code == "policies.ratelimit.SpikeArrestViolation"
    assert fault.message.startswith("Spike arrest")
    bare = ApigeeFault.model_validate({"fault": {}})
    assert bare.error_code == ""
    assert bare.message == ""


def test_query_result_model() -> None:
    result = StkQueryResult(
        status=StkStatus.pending, checkout_request_id="ws_CO_1", result_code="4999"
    )
    assert result.result_desc == ""
    assert result.merchant_request_id is None


# --- result codes and times -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0, StkStatus.succeeded),
        ("0", StkStatus.succeeded),
        (" 0 ", StkStatus.succeeded),
        *[
            (code, StkStatus.failed)
            for code in (1, 2, 3, 4, 8, 17, 26, 1001, 1019, 1025, 9999, 1032, 1036, 1037)
        ],
        *[(code, StkStatus.failed) for code in (2001, 2028, 8006)],
        ("1032", StkStatus.failed),
        ("SFC_IC0003", StkStatus.failed),
        (4999, StkStatus.pending),
        ("4999", StkStatus.pending),
        (5, StkStatus.unknown),
        ("1031", StkStatus.unknown),
        ("500.001.1001", StkStatus.unknown),
        ("", StkStatus.unknown),
        ("sfc_ic0003", StkStatus.unknown),
        (-1, StkStatus.unknown),
        (True, StkStatus.unknown),
    ],
)
def test_classify_result_code(code: str | int, status: StkStatus) -> None:
    assert classify_result_code(code) is status


def test_normalize_result_code() -> None:
    assert normalize_result_code(1032) == "1032"
    assert normalize_result_code(" 0032 ") == "32"
    assert normalize_result_code("SFC_IC0003") == "SFC_IC0003"
    with pytest.raises(TypeError):
        normalize_result_code(False)


def test_nairobi_timestamp() -> None:
    moment = datetime(2026, 11, 26, 11, 30, 5, tzinfo=UTC)
    assert nairobi_timestamp(moment) == "20261126143005"
    now = nairobi_timestamp()
    assert len(now) == 14
    assert now.isdigit()
    with pytest.raises(ValueError, match="aware"):
        nairobi_timestamp(datetime(2026, 11, 26, 11, 30, 5))  # noqa: DTZ001 - the point


@pytest.mark.parametrize("value", ["2026112614300", "2026112614300x", "20261326143005", True])
def test_parse_nairobi_timestamp_refuses(value: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_nairobi_timestamp(value)


def test_parse_nairobi_timestamp_number_and_text() -> None:
    expected = datetime(2026, 11, 26, 14, 30, 5, tzinfo=NAIROBI)
    assert parse_nairobi_timestamp(20261126143005) == expected
    assert parse_nairobi_timestamp(" 20261126143005 ") == expected
