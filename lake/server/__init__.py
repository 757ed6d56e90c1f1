"""`lake serve`: the lake behind Arrow Flight SQL, for principals whose identity is proven.

`auth` and `credentials` prove who calls; `service` answers Flight SQL and Lakeward's actions by
calling the same governed `Lake` an embedded caller uses, with the authenticated principal;
`client` is the remote lake `lake.connect("grpc://...")` returns.
"""

SCHEMES = ("grpc://", "grpc+tls://", "grpc+tcp://")  # URLs of a server, not a lake folder
