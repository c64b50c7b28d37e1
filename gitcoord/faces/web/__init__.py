"""`gitcoord web`: the live page of a person's daily review (`app.py`).

Only `gitcoord web` imports this package, so Starlette and uvicorn stay off the
command line's path.
"""
