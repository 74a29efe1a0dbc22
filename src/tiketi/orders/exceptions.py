from tiketi.core.errors import Conflict, InvalidInput, NotFound


class OrderNotFound(NotFound):
    code = "order_not_found"

    def default_detail(self) -> str:
        return "No such order"


class SoldOut(Conflict):
    code = "sold_out"


class NotOnSale(Conflict):
    code = "not_on_sale"


class LimitExceeded(Conflict):
    code = "limit_exceeded"


class InvalidOrderItems(InvalidInput):
    code = "invalid_items"


class OrderNotPending(Conflict):
    code = "order_not_pending"
