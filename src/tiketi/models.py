"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from tiketi.auth.models import LoginThrottle, RefreshToken
from tiketi.core.database import Base
from tiketi.core.idempotency import IdempotencyRecord
from tiketi.events.models import Category, Event, TicketType
from tiketi.orders.models import Order, OrderItem
from tiketi.payments.models import Payment, PaymentCallback
from tiketi.search.models import SALE_PRICES
from tiketi.tickets.models import Ticket
from tiketi.users.models import User

metadata = Base.metadata

__all__ = [
    "SALE_PRICES",
    "Base",
    "Category",
    "Event",
    "IdempotencyRecord",
    "LoginThrottle",
    "Order",
    "OrderItem",
    "Payment",
    "PaymentCallback",
    "RefreshToken",
    "Ticket",
    "TicketType",
    "User",
    "metadata",
]
