"""The operator console (``zapi-queue console``): orders, dead letters and instances on pages.

``app.py`` builds the Starlette app, ``auth.py`` asks for the login, ``csrf.py`` checks every
form; each group of pages is a module of its own (``app.PAGE_MODULES``) with its templates in
``templates/``. Nothing here shows a secret, and phones and PIX keys are shown masked.
"""

#: Where ``zapi-queue console`` listens unless told otherwise (loopback, as compose binds it).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
