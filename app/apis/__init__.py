"""One module per lock API; each translates its documented shapes to lockcore."""
