from tiketi.core.errors import Conflict, NotFound


class TicketNotFound(NotFound):
    code = "ticket_not_found"

    def default_detail(self) -> str:
        return "No such ticket"


class UnknownTicket(NotFound):
    code = "unknown_ticket"

    def default_detail(self) -> str:
        return "No ticket with this code for this event"


class AlreadyCheckedIn(Conflict):
    code = "already_checked_in"


class TicketVoid(Conflict):
    code = "ticket_void"

    def default_detail(self) -> str:
        return "This ticket is void (its event was cancelled or the order refunded)"
