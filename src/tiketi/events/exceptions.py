from tiketi.core.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable


class EventNotFound(NotFound):
    code = "event_not_found"

    def default_detail(self) -> str:
        return "No such event"


class TicketTypeNotFound(NotFound):
    code = "ticket_type_not_found"

    def default_detail(self) -> str:
        return "No such ticket type for this event"


class UnknownCategory(InvalidInput):
    code = "unknown_category"


class CategoryExists(Conflict):
    code = "category_exists"


class InvalidEventState(Conflict):
    """The event's status does not allow this (publish twice, edit a cancelled event...)."""

    code = "invalid_event_state"


class NotPublishable(Conflict):
    code = "not_publishable"


class EventHasSales(Conflict):
    code = "event_has_sales"


class QuantityBelowCommitted(Conflict):
    code = "quantity_below_committed"


class TicketTypeInUse(Conflict):
    code = "ticket_type_in_use"


class DuplicateTicketType(Conflict):
    code = "duplicate_ticket_type"


class StreamsUnavailable(ServiceUnavailable):
    """No stream can start now: this process is shutting down or live updates are not running."""

    code = "streams_unavailable"


class TooManyStreams(ServiceUnavailable):
    """This process already serves its maximum number of live streams; retry (or another one)."""

    code = "too_many_streams"
