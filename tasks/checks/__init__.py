"""HTTP stages of the health check (Prefect-free): OAuth token smoke test and endpoint checks.

``http`` builds the verified client, ``retry`` holds the retry rules, ``oauth`` and
``endpoints`` run the checks and return frozen results with ``to_dict()``.
"""
