"""The HTTP edge: routes, wire schemas, streaming multipart, middleware and the error responses."""
