"""tiketi: event ticketing for Kenya with M-Pesa payments."""

__version__ = "0.1.0"
