"""gunicorn's settings for the hub: `make run` passes this file, and gunicorn reads it by itself
when started from the checkout (`gunicorn hub.wsgi`); elsewhere pass `--config path/to/it`.

Command-line options override what is set here (bind, workers, log files).
"""

# The access log never shows the Basic-auth user (a Segment write key) and redacts credentials
# in paths, query strings and headers, and so does the error log: hub.gunicorn_logger.
logger_class = "hub.gunicorn_logger.RedactingLogger"
# Apache's combined format without %(u)s; the access log is off unless --access-logfile is given.
access_log_format = '%(h)s %(l)s - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
# gunicorn 25.1+ opens a control socket under $XDG_RUNTIME_DIR or $HOME/.gunicorn by default; the
# hub does not use gunicornc, and the socket is left behind when gunicorn is killed. (Older
# gunicorns ignore the setting.)
control_socket_disable = True
