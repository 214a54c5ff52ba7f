"""The HTTP service: JSON API for point-of-sale, web form for staff, and the quote ledger."""
