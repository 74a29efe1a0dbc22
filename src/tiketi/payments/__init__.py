"""Payments: orders are paid with M-Pesa STK pushes (see `tiketi.payments.mpesa`)."""
