"""In-process stand-ins for the services we do not run ourselves (Stripe), driven through the
real client libraries."""
