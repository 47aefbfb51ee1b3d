"""One coded error type (core/errors.py) over the vocabulary's codes (core/vocab.py): every code has one HTTP
status, the codes and enums are plain strings on the wire, and the layers' error classes are the same type."""

from __future__ import annotations

import json

import pytest

from wyoming_qwen3tts.core.errors import HTTP_STATUS, CodedError, http_status, wyoming_code
from wyoming_qwen3tts.core.vocab import MODEL_TYPES, ErrorCode, ModelRole, QuantizeMode, VoiceKind
from wyoming_qwen3tts.http.errors import ApiError, error_response
from wyoming_qwen3tts.service.errors import ServiceError
from wyoming_qwen3tts.voices.errors import VoiceLibraryError


def test_every_code_has_one_http_status():
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert http_status("server-busy") == 503 and http_status(ErrorCode.VOICE_QUOTA) == 507
    assert http_status("no-such-code") == 500  # an unknown code is the server's fault


@pytest.mark.parametrize("member", [ErrorCode.SERVER_BUSY, ModelRole.VOICE_DESIGN, QuantizeMode.INT8])
def test_vocabulary_is_plain_strings_on_the_wire(member):
    assert str(member) == f"{member}" == "%s" % member == member.value
    assert json.dumps({"code": member}) == json.dumps({"code": member.value})
    assert member == member.value and {member.value: 1}[member] == 1
    assert wyoming_code(member) == member.value and type(wyoming_code(member)) is str


def test_roles_and_kinds():
    assert MODEL_TYPES == ("custom_voice", "base", "voice_design")
    assert [ModelRole(t).label for t in MODEL_TYPES] == ["CustomVoice", "Base", "VoiceDesign"]
    assert VoiceKind.CLONE.role is ModelRole.BASE and VoiceKind.STYLE.role is ModelRole.CUSTOM_VOICE


def test_the_layers_errors_are_one_type():
    errors = [
        ServiceError(ErrorCode.SERVER_BUSY, "busy"),
        ApiError(ErrorCode.INVALID_FIELD, "bad speed", "speed"),
        VoiceLibraryError(ErrorCode.VOICE_EXISTS, "taken"),
    ]
    for exc in errors:
        assert isinstance(exc, CodedError) and isinstance(exc.code, ErrorCode) and exc.message
    assert errors[1].param == "speed" and errors[0].param is None
    assert errors[0].http_status == 503 and errors[2].http_status == 409
    assert str(errors[0]) == "busy"  # the text as before
    assert str(errors[2]) == "voice-exists: taken" and isinstance(errors[2], ValueError)  # the CLI's line
    with pytest.raises(ValueError):
        CodedError("not-a-code", "a typo in a raise site fails loudly")  # type: ignore[arg-type]


def test_error_response_body_and_status():
    response = error_response(ErrorCode.MODEL_LOADING, "still loading")
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    body = json.loads(response.text)
    assert body == {
        "error": {"message": "still loading", "type": "server_error", "param": None, "code": "model-loading"}
    }
