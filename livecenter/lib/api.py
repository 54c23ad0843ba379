"""How a rule's error reaches a person, shared by every app's services and API.

Services raise `invalid(field, message)`: a Django ValidationError keyed by
the field at fault, which a page shows beside the field. An API view runs a
service through `call_service`, which turns that error into DRF's 400 whose
JSON names the field, and checks input types with `valid_data`. A management
command raises `command_error`, which names the option instead of the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from rest_framework import serializers
from rest_framework.exceptions import ValidationError as ApiValidationError

T = TypeVar("T")


def invalid(field: str, message: str) -> ValidationError:
    """The error a service raises: `message` names the fix, `field` where it goes."""
    return ValidationError({field: [message]})


class FieldErrors:
    """Every bad field of one request, reported together: a service runs each
    field's checks inside `check()` and calls `raise_any()` before it changes
    anything, so a form shows all its errors at once, not one per submit."""

    def __init__(self) -> None:
        self.errors: dict[str, list] = {}

    @contextmanager
    def check(self) -> Iterator[None]:
        try:
            yield
        except ValidationError as exc:
            exc.update_error_dict(self.errors)

    def raise_any(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


def call_service(service: Callable[..., T], *args, **kwargs) -> T:
    """Run a service, turning its ValidationError into the API's 400."""
    try:
        return service(*args, **kwargs)
    except ValidationError as exc:
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        raise ApiValidationError(detail) from None


def valid_data(serializer_class: type[serializers.Serializer], data) -> dict:
    """`data` checked by `serializer_class`; a 400 naming the field when it fails."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def command_error(exc: ValidationError, option_for_field: Mapping[str, str]) -> CommandError:
    """A service's error as a management command's: each message after the
    option that set its field ("--app: app name must be ...")."""
    problems = [
        f"{option_for_field.get(field, field)}: {message}"
        for field, messages in exc.message_dict.items()
        for message in messages
    ]
    return CommandError("; ".join(problems))
