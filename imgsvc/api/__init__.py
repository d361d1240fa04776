"""The HTTP edge: routes by subject, the JSON bodies, auth, the OpenAPI document, the page."""
