"""The in-database side of LASER: what the plpython3u bodies call (gRPC client, input checks).

Runs inside a PostgreSQL backend under /usr/bin/python3: it imports only the generated stubs,
grpc and this package. Never pglast (its libpg_query symbols clash with the server's own).
"""
